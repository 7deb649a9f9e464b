//! The command line of chapter 06, the complete engine: every command of
//! chapters 01 to 05 (with this chapter's [`Bridge`] extension beside
//! chapter 4's volumes on `run`, `create`, `start`, `rm`, `inspect` and
//! `ps`), plus `network create|ls|inspect|rm|connect|disconnect|prune`
//! and `port`.

use crate::extension::{self, attachments, make_ready, Bridge, Saved};
use crate::network::{Network, Networks, DEFAULT};
use crate::{ipam, link, names, nat, subnet};
use ch01_images::cli::GlobalArgs;
use ch01_images::error::{Error, Result};
use ch01_images::table::render;
use ch03_run::extension::{Both, Extension, NoExtension};
use ch03_run::{find, state};
use ch05_dockerfile::cli as dockerfile_cli;
use clap::Subcommand;
use std::net::Ipv4Addr;

// ANCHOR: every_command
/// Every command: chapter 5's (with the extension `E` of a later chapter
/// beside this one's), then `network …` and `port`.
#[derive(Subcommand, Clone, Debug)]
pub enum Command<E: Extension = NoExtension> {
    #[command(flatten)]
    Earlier(dockerfile_cli::Command<Both<Bridge, E>>),
    /// Manage networks: create, ls, inspect, rm, connect, disconnect, prune
    #[command(subcommand)]
    Network(NetworkCommand),
    /// List a container's published ports, or the host port of one
    Port {
        container: String,
        /// PORT[/PROTO] inside the container
        private: Option<String>,
    },
}

impl<E: Extension> Command<E> {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Earlier(command) => command.name(),
            Command::Network(command) => command.name(),
            Command::Port { .. } => "port",
        }
    }
}

/// Runs any command of chapters 01 to 06; returns the exit code.
pub fn run_command<E: Extension>(
    command: Command<E>,
    globals: &GlobalArgs,
    extension: E,
) -> Result<i32> {
    match command {
        Command::Earlier(command) => {
            let bridge = Bridge::new(&globals.root);
            dockerfile_cli::run_command(command, globals, Both(bridge, extension))
        }
        Command::Network(command) => run_network_command(command, globals),
        Command::Port { container, private } => port(globals, &container, private.as_deref()),
    }
}
// ANCHOR_END: every_command

// ANCHOR: network_commands
/// `network …`, docker's flags and output.
#[derive(Subcommand, Clone, Debug)]
pub enum NetworkCommand {
    /// Create a network (a Linux bridge and a subnet); prints its ID
    Create {
        /// The driver: only bridge
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Its address range, e.g. 172.30.0.0/16 (default: the first free one of docker's pools)
        #[arg(long)]
        subnet: Option<String>,
        /// The bridge's own address (default: the subnet's first)
        #[arg(long)]
        gateway: Option<String>,
        /// No way out of the network: containers reach only each other
        #[arg(long)]
        internal: bool,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only the IDs
        #[arg(short, long)]
        quiet: bool,
        /// Full IDs
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show networks as JSON
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks (refused while a container, running or not, is attached)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Attach a container to a network (a running one gets a new interface at once)
    Connect {
        /// Its address on that network
        #[arg(long)]
        ip: Option<String>,
        /// Another name for it on that network (repeatable)
        #[arg(long = "alias")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Detach a container from a network
    Disconnect {
        /// Accepted, as docker's (there is no daemon state to force past)
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove every user-defined network no container is attached to
    Prune {
        /// Do not ask (this engine never asks)
        #[arg(short, long)]
        force: bool,
    },
}
// ANCHOR_END: network_commands

impl NetworkCommand {
    pub fn name(&self) -> &'static str {
        match self {
            NetworkCommand::Create { .. } => "network create",
            NetworkCommand::Ls { .. } => "network ls",
            NetworkCommand::Inspect { .. } => "network inspect",
            NetworkCommand::Rm { .. } => "network rm",
            NetworkCommand::Connect { .. } => "network connect",
            NetworkCommand::Disconnect { .. } => "network disconnect",
            NetworkCommand::Prune { .. } => "network prune",
        }
    }
}

pub const EXAMPLES: &str = "\
Examples:
  ch06-bridge run -d --name web -p 8080:80 IMAGE httpd -f -p 80   # reachable at 127.0.0.1:8080
  ch06-bridge network create app                                   # a network of your own
  ch06-bridge run -d --name db --network app IMAGE sleep 1d
  ch06-bridge run --rm --network app IMAGE ping -c1 db             # by name, on a user network
  ch06-bridge network inspect app
  ch06-bridge port web
  ch06-bridge --explain run --rm IMAGE ip addr                     # every ip and iptables command";

/// The pseudo-networks docker lists beside the bridges.
const PSEUDO: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

fn pseudo_id(name: &str) -> String {
    ch01_images::digest::Digest::of(format!("crabbox network {name}").as_bytes())
        .hex()
        .to_string()
}

/// Runs a `network` command; returns the exit code.
pub fn run_network_command(command: NetworkCommand, globals: &GlobalArgs) -> Result<i32> {
    let networks = Networks::open(&globals.root)?;
    match command {
        NetworkCommand::Create {
            driver,
            subnet,
            gateway,
            internal,
            name,
        } => {
            if driver != "bridge" {
                return Err(Error::new(format!(
                    "network driver {driver:?} is not available: only bridge"
                )));
            }
            let subnet = subnet
                .map(|s| subnet::Cidr::parse(&s).map_err(Error::new))
                .transpose()?;
            let gateway = gateway
                .map(|g| {
                    g.parse::<Ipv4Addr>()
                        .map_err(|_| Error::new(format!("invalid gateway {g:?}: an IPv4 address")))
                })
                .transpose()?;
            extension::require_tools()?;
            let _lock = networks.lock()?;
            let host = subnet::host_ranges()?;
            // The default network is recorded first, so that it keeps
            // 172.17.0.0/16 (docker0's) whatever is created before it.
            networks.ensure_default(&host)?;
            let network = networks.create(&name, subnet, gateway, internal, &host)?;
            if let Err(e) = make_ready(&network) {
                // Nothing half-made: no bridge, no rule, no file.
                let _ = remove_host_side(&network);
                let _ = networks.remove(&network.name);
                return Err(e);
            }
            println!("{}", network.id);
            Ok(0)
        }
        NetworkCommand::Ls { quiet, no_trunc } => {
            let list = {
                let _lock = networks.lock()?;
                networks.ensure_default(&subnet::host_ranges()?)?;
                networks.list()?
            };
            let id = |full: &str| {
                if no_trunc {
                    full.to_string()
                } else {
                    full[..12].to_string()
                }
            };
            let mut rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| vec![id(&n.id), n.name.clone(), n.driver.clone(), "local".into()])
                .collect();
            for (name, driver) in PSEUDO {
                rows.push(vec![
                    id(&pseudo_id(name)),
                    name.into(),
                    driver.into(),
                    "local".into(),
                ]);
            }
            rows.sort_by(|a, b| a[1].cmp(&b[1]));
            if quiet {
                rows.iter().for_each(|r| println!("{}", r[0]));
            } else {
                print!(
                    "{}",
                    render(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
                );
            }
            Ok(0)
        }
        NetworkCommand::Inspect { networks: names } => {
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for name in &names {
                if name == DEFAULT {
                    let _lock = networks.lock()?;
                    networks.ensure_default(&subnet::host_ranges()?)?;
                }
                match networks.find(name) {
                    Ok(network) => out.push(inspect_json(&network)),
                    Err(e) => missing.push(e),
                }
            }
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
            match missing.into_iter().next() {
                Some(e) => Err(e.with_exit_code(1)),
                None => Ok(0),
            }
        }
        NetworkCommand::Rm { networks: names } => {
            let mut failed = None;
            for name in &names {
                match remove_network(globals, &networks, name) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        failed = Some(e);
                    }
                }
            }
            match failed {
                Some(_) => Ok(1),
                None => Ok(0),
            }
        }
        NetworkCommand::Connect {
            ip,
            aliases,
            network,
            container,
        } => connect(globals, &networks, &network, &container, ip, aliases).map(|()| 0),
        NetworkCommand::Disconnect {
            network, container, ..
        } => disconnect(globals, &networks, &network, &container).map(|()| 0),
        NetworkCommand::Prune { .. } => {
            let _lock = networks.lock()?;
            let mut deleted = Vec::new();
            for network in networks.list()? {
                if network.name != DEFAULT && network.endpoints.is_empty() {
                    remove_host_side(&network)?;
                    networks.remove(&network.name)?;
                    deleted.push(network.name);
                }
            }
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                deleted.iter().for_each(|n| println!("{n}"));
            }
            Ok(0)
        }
    }
}

// ANCHOR: network_rm
/// `network rm`: refused for `bridge` and while a container is attached;
/// else the bridge, its rules and its file go.
fn remove_network(_globals: &GlobalArgs, networks: &Networks, name: &str) -> Result<()> {
    if name == DEFAULT || PSEUDO.iter().any(|(p, _)| *p == name) {
        return Err(Error::new(format!(
            "{name} is a pre-defined network and cannot be removed"
        )));
    }
    let _lock = networks.lock()?;
    let network = networks.find(name)?;
    if !network.endpoints.is_empty() {
        let users: Vec<&str> = network
            .endpoints
            .values()
            .map(|e| e.container.as_str())
            .collect();
        return Err(Error::new(format!(
            "error while removing network: network {} id {} has active endpoints ({}): remove or disconnect them first",
            network.name,
            &network.id[..12],
            users.join(", ")
        )));
    }
    remove_host_side(&network)?;
    networks.remove(&network.name)
}
// ANCHOR_END: network_rm

/// The bridge and this network's rules.
fn remove_host_side(network: &Network) -> Result<()> {
    if link::exists(&network.bridge) {
        let iptables = nat::Iptables::detect()?;
        iptables.remove_network(network)?;
        link::remove_bridge(&network.bridge)?;
    }
    Ok(())
}

/// `network inspect`'s JSON, docker's fields.
pub fn inspect_json(network: &Network) -> serde_json::Value {
    let containers: serde_json::Map<String, serde_json::Value> = network
        .endpoints
        .iter()
        .map(|(id, e)| {
            (
                id.clone(),
                serde_json::json!({
                    "Name": e.container,
                    "EndpointID": ch01_images::digest::Digest::of(format!("{}{id}", network.id).as_bytes()).hex(),
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, network.subnet.prefix),
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    serde_json::json!({
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{ "Subnet": network.subnet.to_string(), "Gateway": network.gateway.to_string() }],
        },
        "Internal": network.internal,
        "Attachable": false,
        "Ingress": false,
        "Containers": containers,
        "Options": { "com.docker.network.bridge.name": network.bridge },
        "Labels": {},
    })
}

/// The PID of a running container, if it runs.
fn running_pid(globals: &GlobalArgs, found: &find::Found) -> Option<nix::unistd::Pid> {
    let _ = globals;
    let state = state::effective_state(&found.dir);
    state
        .is_running()
        .then_some(state.pid)
        .flatten()
        .map(nix::unistd::Pid::from_raw)
}

// ANCHOR: connect
/// `network connect`: an address on one more network; a running
/// container gets its interface (`eth1`…) at once.
fn connect(
    globals: &GlobalArgs,
    networks: &Networks,
    name: &str,
    container: &str,
    ip: Option<String>,
    aliases: Vec<String>,
) -> Result<()> {
    let found = find::find(&globals.root, container)?;
    let saved = found
        .config
        .saved::<Saved>(extension::NAME)
        .unwrap_or_default();
    if saved.mode != "bridge" {
        return Err(Error::new(format!(
            "container {} is on network mode {:?}: only a container on a bridge network can join another",
            found.config.name,
            if saved.mode.is_empty() { "none" } else { saved.mode.as_str() }
        )));
    }
    let requested = ip
        .map(|ip| {
            ip.parse::<Ipv4Addr>()
                .map_err(|_| Error::new(format!("invalid IPv4 address {ip:?} for --ip")))
        })
        .transpose()?;
    let _lock = networks.lock()?;
    let mut network = networks.find(name)?;
    if network.name == DEFAULT && (requested.is_some() || !aliases.is_empty()) {
        return Err(Error::new(
            "--ip and --alias are supported on user defined networks only",
        ));
    }
    let id = &found.config.id;
    // The lowest ethN it does not have (a disconnect may leave a gap).
    let taken: Vec<String> = attachments(&networks.list()?, id)
        .into_iter()
        .map(|(_, e)| e.interface)
        .collect();
    let interface = (0..)
        .map(|n| format!("eth{n}"))
        .find(|name| !taken.contains(name))
        .expect("a free interface name");
    let host_interface = link::host_interface_name(id, &network.id);
    make_ready(&network)?;
    let endpoint = ipam::allocate(
        &mut network,
        id,
        &found.config.name,
        requested,
        aliases,
        &interface,
        &host_interface,
    )?;
    if let Some(pid) = running_pid(globals, &found) {
        let default_route = endpoint.interface == "eth0";
        if let Err(e) = link::attach(pid, &network, &endpoint, default_route) {
            let _ = link::detach(&host_interface);
            return Err(e);
        }
    }
    networks.save(&network)?;
    let all = networks.list()?;
    names::refresh(&globals.root, &network, &all, "")
}
// ANCHOR_END: connect

/// `network disconnect`: the address goes back; a running container
/// loses that interface at once.
fn disconnect(
    globals: &GlobalArgs,
    networks: &Networks,
    name: &str,
    container: &str,
) -> Result<()> {
    let found = find::find(&globals.root, container)?;
    let _lock = networks.lock()?;
    let mut network = networks.find(name)?;
    let id = found.config.id.clone();
    let Some(endpoint) = ipam::release(&mut network, &id) else {
        return Err(Error::new(format!(
            "container {} is not connected to network {}",
            found.config.name, network.name
        )));
    };
    if let Some(pid) = running_pid(globals, &found) {
        link::detach_inside(pid, &endpoint.interface)?;
    }
    let _ = link::detach(&endpoint.host_interface);
    networks.save(&network)?;
    let all = networks.list()?;
    names::refresh(&globals.root, &network, &all, "")?;
    // Its own /etc/hosts loses that network's peers too.
    if found.dir.join("hosts").is_file() {
        let content = names::hosts_file(&id, &found.config.spec.hostname, &all);
        ch03_run::etc::rewrite_etc_file(&found.dir, "hosts", &content)?;
    }
    Ok(())
}

// ANCHOR: port
/// `port CONTAINER [PRIVATE]`: `80/tcp -> 0.0.0.0:8080`, docker's lines.
fn port(globals: &GlobalArgs, container: &str, private: Option<&str>) -> Result<i32> {
    let found = find::find(&globals.root, container)?;
    let saved = found
        .config
        .saved::<Saved>(extension::NAME)
        .unwrap_or_default();
    let wanted = private.map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut shown = 0;
    for port in &saved.ports {
        match &wanted {
            Some(w) if *w == port.private() => {
                println!("{}:{}", port.host_ip, port.host_port);
                shown += 1;
            }
            Some(_) => {}
            None => {
                println!("{} -> {}:{}", port.private(), port.host_ip, port.host_port);
                shown += 1;
            }
        }
    }
    if let (Some(w), 0) = (&wanted, shown) {
        return Err(Error::new(format!(
            "no public port '{w}' published for {}",
            found.config.name
        ))
        .with_exit_code(1));
    }
    Ok(0)
}
// ANCHOR_END: port
