//! [`Bridge`]: this chapter plugged into chapter 3 through its seam, the
//! `Extension` trait, beside chapter 4's volumes. Nothing of chapter 3
//! changes: its `run`, `create`, `start`, `rm`, `prune`, `inspect` and
//! `ps` call these methods.
//!
//! ```text
//! run/create --network -p ─▶ create: choose the network and host ports (nothing made yet),
//!                            make the bridge if missing, take an address (IPAM),
//!                            write /etc/hosts (its own and its peers'), save the ports
//! the child at the gate    ─▶ after_create: veth pair, eth0 inside with its address and
//!                            route; reserve the host ports, DNAT rules
//! PID 1 reaped             ─▶ after_stop: DNAT rules and reservations go (the address stays)
//! rm, rm -f, prune, --rm   ─▶ on_remove: the address goes back, peers' /etc/hosts rewritten
//! inspect, ps              ─▶ NetworkSettings, the PORTS column
//! ```
//!
//! An address belongs to the container, not to one run of it: `stop` and
//! `start` keep it, so peers that learned it (their `/etc/hosts`, an nginx
//! that resolved a name once) still find the container after a restart.

use crate::network::{Endpoint, Network, Networks, DEFAULT};
use crate::ports::{self, Published, Reservation};
use crate::{address, ipam, link, names, nat, subnet};
use ch01_images::error::{Error, Result};
use ch03_run::extension::{Creating, Extension, NoArgs, Removing};
use ch03_run::lifecycle::{Config, Container};
use clap::Args;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The name this extension saves its data under in `config.json`.
pub const NAME: &str = "network";

// ANCHOR: flags
/// The flags this chapter adds to `run` and `create`.
#[derive(Args, Clone, Debug, Default)]
#[group(skip)]
pub struct NetworkArgs {
    /// `--network bridge|NAME|host|none`.
    #[arg(
        long = "network",
        alias = "net",
        value_name = "NETWORK",
        default_value = DEFAULT,
        help = "Connect the container to a network: bridge (the default), a network of `network create`, host (the host's own), none (only lo)"
    )]
    pub network: String,
    /// `--ip`: ask for this address (user-defined networks only).
    #[arg(
        long = "ip",
        value_name = "IPv4",
        help = "The container's IPv4 address (on a user-defined network)"
    )]
    pub ip: Option<String>,
    /// `--network-alias`: more names for it on the network.
    #[arg(
        long = "network-alias",
        alias = "alias",
        value_name = "NAME",
        help = "Another name the other containers of the network reach it by (repeatable)"
    )]
    pub aliases: Vec<String>,
    /// `-p [IP:][HOSTPORT:]CTRPORT[/PROTO]`.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:][HOSTPORT:]PORT[/PROTO]",
        help = "Publish a container's port on the host: 8080:80, 127.0.0.1:8080:80, 80 (a free host port), 8000-8001:80-81, 53:53/udp"
    )]
    pub publish: Vec<String>,
    /// `--dns`: the container's resolvers instead of the host's.
    #[arg(
        long = "dns",
        value_name = "IP",
        help = "A DNS server for the container's /etc/resolv.conf instead of the host's (repeatable)"
    )]
    pub dns: Vec<String>,
    /// `-P`: every port the image EXPOSEs, on free host ports.
    #[arg(
        short = 'P',
        long = "publish-all",
        help = "Publish every port the image EXPOSEs, each on a free host port"
    )]
    pub publish_all: bool,
}
// ANCHOR_END: flags

// ANCHOR: saved
/// What `config.json` keeps of the container's networking (under
/// `extensions.network`). Its addresses are in the networks' files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// `bridge` (on one or more networks), `host` or `none`.
    pub mode: String,
    /// Its published ports.
    #[serde(default)]
    pub ports: Vec<Published>,
}
// ANCHOR_END: saved

/// Chapter 6's extension. It knows the engine root (for the networks'
/// files) and holds the host ports of the container this process waits
/// for (a foreground `run`, or a monitor).
pub struct Bridge {
    root: PathBuf,
    /// Host ports held, by container ID (one process may start several).
    reservations: Mutex<HashMap<String, Vec<Reservation>>>,
}

/// A copy knows the same root and holds no ports (clap's derives want
/// `Clone` and `Debug` of every extension).
impl Clone for Bridge {
    fn clone(&self) -> Bridge {
        Bridge::new(&self.root)
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("root", &self.root).finish()
    }
}

impl Bridge {
    pub fn new(root: &Path) -> Bridge {
        Bridge {
            root: root.to_path_buf(),
            reservations: Mutex::new(HashMap::new()),
        }
    }
}

/// Every network `id` is attached to, with its endpoint there, `eth0` first.
pub fn attachments(networks: &[Network], id: &str) -> Vec<(Network, Endpoint)> {
    let mut found: Vec<(Network, Endpoint)> = networks
        .iter()
        .filter_map(|n| n.endpoints.get(id).map(|e| (n.clone(), e.clone())))
        .collect();
    found.sort_by_key(|(_, e)| interface_number(&e.interface));
    found
}

fn interface_number(interface: &str) -> u32 {
    interface
        .trim_start_matches("eth")
        .parse()
        .unwrap_or(u32::MAX)
}

// ANCHOR: ready
/// Makes the host side of `network` if it is not there (after a reboot,
/// or on first use): the bridge with the gateway address, forwarding on,
/// our iptables chains and this network's rules.
pub fn make_ready(network: &Network) -> Result<()> {
    address::enable_forwarding()?;
    if link::exists(&network.bridge) {
        return Ok(());
    }
    link::ensure_bridge(network)?;
    address::enable_route_localnet(&network.bridge)?;
    let iptables = nat::Iptables::detect()?;
    iptables.ensure_chains()?;
    iptables.add_network(network)
}
// ANCHOR_END: ready

impl Extension for Bridge {
    type RunArgs = NetworkArgs;
    type StartArgs = NoArgs;
    type RmArgs = NoArgs;

    // ANCHOR: create
    fn create(&self, args: &NetworkArgs, new: &mut Creating) -> Result<()> {
        let mode = args.network.as_str();
        if let Some(other) = mode.strip_prefix("container:") {
            return Err(Error::new(format!(
                "--network container:{other} (sharing another container's network) is not supported here: put both on one network instead"
            )));
        }
        if mode == "none" || mode == "host" {
            if mode == "host" && !args.dns.is_empty() {
                return Err(Error::new(
                    "conflicting options: --dns and --network host (the host's own /etc/resolv.conf is used)",
                ));
            }
            if args.ip.is_some() || !args.aliases.is_empty() {
                return Err(Error::new(format!(
                    "--ip and --network-alias need a bridge network, not --network {mode}"
                )));
            }
            if !args.publish.is_empty() || args.publish_all {
                eprintln!("WARNING: Published ports are discarded when using {mode} network mode");
            }
            if mode == "host" {
                // The host's namespace, and its own files as they are:
                // a loopback resolver there is the host's, reachable.
                new.spec.namespaces.retain(|n| n != "network");
                new.etc.resolv_conf =
                    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                new.etc.hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            }
            new.save(
                NAME,
                Saved {
                    mode: mode.into(),
                    ports: Vec::new(),
                },
            );
            return Ok(());
        }
        require_tools()?;
        if !args.dns.is_empty() {
            let mut resolv_conf = String::new();
            for server in &args.dns {
                let ip: std::net::IpAddr = server.parse().map_err(|_| {
                    Error::new(format!(
                        "invalid --dns {server:?}: give a server's IP address"
                    ))
                })?;
                resolv_conf.push_str(&format!("nameserver {ip}\n"));
            }
            new.etc.resolv_conf = resolv_conf;
        }
        let requested = match &args.ip {
            Some(ip) => Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| Error::new(format!("invalid IPv4 address {ip:?} for --ip")))?,
            ),
            None => None,
        };
        // The host ports first: a taken one fails before anything is made.
        let mut requests = Vec::new();
        for spec in &args.publish {
            requests.extend(ports::parse(spec)?);
        }
        if args.publish_all {
            let exposed: Vec<String> = new
                .image
                .config
                .config
                .exposed_ports
                .clone()
                .unwrap_or_default()
                .into_keys()
                .collect();
            requests.extend(ports::publish_all(&exposed)?);
        }
        let published = ports::choose(&requests)?;

        let networks = Networks::open(new.root)?;
        let _lock = networks.lock()?;
        let mut network = if mode == DEFAULT {
            networks.ensure_default(&subnet::host_ranges()?)?
        } else {
            networks.find(mode)?
        };
        if network.name == DEFAULT && requested.is_some() {
            return Err(Error::new(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        if network.name == DEFAULT && !args.aliases.is_empty() {
            return Err(Error::new(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        make_ready(&network)?;
        let host_interface = link::host_interface_name(new.id, &network.id);
        ipam::allocate(
            &mut network,
            new.id,
            new.name,
            requested,
            args.aliases.clone(),
            "eth0",
            &host_interface,
        )?;
        networks.save(&network)?;
        new.save(
            NAME,
            Saved {
                mode: "bridge".into(),
                ports: published,
            },
        );
        let all = networks.list()?;
        new.etc.hosts = names::hosts_file(new.id, &new.spec.hostname, &all);
        names::refresh(new.root, &network, &all, new.id)
    }
    // ANCHOR_END: create

    // ANCHOR: after_create
    fn after_create(&self, container: &Container, pid: Pid) -> Result<()> {
        let Some(saved) = container.config.saved::<Saved>(NAME) else {
            return Ok(());
        };
        if saved.mode != "bridge" {
            return Ok(());
        }
        let attached = {
            let networks = Networks::open(&self.root)?;
            let _lock = networks.lock()?;
            attachments(&networks.list()?, &container.config.id)
        };
        for (network, endpoint) in &attached {
            make_ready(network)?;
            // The pair of a previous run dies with that run's namespace,
            // a little after it: a quick restart may still find it.
            if link::exists(&endpoint.host_interface) {
                link::detach(&endpoint.host_interface)?;
            }
            link::attach(pid, network, endpoint, endpoint.interface == "eth0")?;
        }
        let Some((network, primary)) = attached.first() else {
            return Ok(());
        };
        if saved.ports.is_empty() {
            return Ok(());
        }
        let iptables = nat::Iptables::detect()?;
        let mut reservations = self.reservations.lock().expect("not poisoned");
        let held = reservations.entry(container.config.id.clone()).or_default();
        for port in &saved.ports {
            let (reservation, _) = ports::reserve(port.host_ip, port.host_port, &port.protocol)?;
            held.push(reservation);
            iptables.add_port(&dnat(network, primary, port))?;
        }
        Ok(())
    }
    // ANCHOR_END: after_create

    fn after_stop(&self, container: &Container) -> Result<()> {
        self.reservations
            .lock()
            .expect("not poisoned")
            .remove(&container.config.id);
        let Some(saved) = container.config.saved::<Saved>(NAME) else {
            return Ok(());
        };
        remove_ports(&self.root, &container.config.id, &saved.ports)
    }

    // ANCHOR: on_remove
    fn on_remove(&self, _args: &NoArgs, removing: &Removing) -> Result<()> {
        let Some(saved) = removing.saved::<Saved>(NAME) else {
            return Ok(());
        };
        if saved.mode != "bridge" {
            return Ok(());
        }
        let id = &removing.config.id;
        remove_ports(removing.root, id, &saved.ports)?;
        let networks = Networks::open(removing.root)?;
        let _lock = networks.lock()?;
        let all = networks.list()?;
        for (mut network, _) in attachments(&all, id) {
            ipam::release(&mut network, id);
            networks.save(&network)?;
            // The veth pair is not deleted here: it goes with the
            // container's network namespace, which the kernel tears down
            // once its last process is gone. Deleting it ourselves would
            // wait ~30 ms for the kernel to let go of it; a pair still
            // there when the name is needed again is deleted then (see
            // `after_create`).
            let all = networks.list()?;
            names::refresh(removing.root, &network, &all, id)?;
        }
        Ok(())
    }
    // ANCHOR_END: on_remove

    fn inspect(&self, config: &Config, json: &mut serde_json::Value) {
        let saved = config.saved::<Saved>(NAME).unwrap_or_default();
        let all = Networks::open(&self.root)
            .and_then(|n| n.list())
            .unwrap_or_default();
        json["NetworkSettings"] = network_settings(&config.id, &saved, &all);
        json["HostConfig"]["NetworkMode"] = match saved.mode.as_str() {
            "bridge" => attachments(&all, &config.id)
                .first()
                .map(|(n, _)| n.name.clone())
                .unwrap_or_else(|| DEFAULT.into())
                .into(),
            "" => "none".into(),
            mode => mode.into(),
        };
    }

    fn ports(&self, config: &Config) -> String {
        let saved = config.saved::<Saved>(NAME).unwrap_or_default();
        saved
            .ports
            .iter()
            .map(Published::ps)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `ip` and `iptables` must be there (on PATH, or in /usr/sbin or /sbin,
/// which a user's PATH may lack): one line naming the package.
pub fn require_tools() -> Result<()> {
    address::program("ip", "iproute2")?;
    address::program("iptables", "iptables")?;
    Ok(())
}

/// The DNAT rule of one published port, towards the container's address.
fn dnat(network: &Network, endpoint: &Endpoint, port: &Published) -> nat::Dnat {
    nat::Dnat {
        host_ip: (!port.host_ip.is_unspecified()).then_some(port.host_ip),
        host_port: port.host_port,
        protocol: port.protocol.clone(),
        container_ip: endpoint.ip,
        container_port: port.container_port,
        bridge: network.bridge.clone(),
        subnet: network.subnet,
    }
}

/// Removes the DNAT rules of a container's published ports (no error if
/// they are gone already: `after_stop` and `on_remove` may both run).
fn remove_ports(root: &Path, id: &str, published: &[Published]) -> Result<()> {
    if published.is_empty() {
        return Ok(());
    }
    let networks = Networks::open(root)?;
    let all = networks.list()?;
    let Some((network, primary)) = attachments(&all, id).into_iter().next() else {
        return Ok(());
    };
    let iptables = nat::Iptables::detect()?;
    for port in published {
        iptables.remove_port(&dnat(&network, &primary, port))?;
    }
    Ok(())
}

// ANCHOR: network_settings
/// `inspect`'s `NetworkSettings`, docker's fields.
pub fn network_settings(id: &str, saved: &Saved, all: &[Network]) -> serde_json::Value {
    let attached = attachments(all, id);
    let mut ports = serde_json::Map::new();
    for port in &saved.ports {
        let binding = serde_json::json!({
            "HostIp": port.host_ip.to_string(),
            "HostPort": port.host_port.to_string(),
        });
        match ports.get_mut(&port.private()) {
            Some(serde_json::Value::Array(list)) => list.push(binding),
            _ => {
                ports.insert(port.private(), serde_json::json!([binding]));
            }
        }
    }
    let mut networks = serde_json::Map::new();
    for (network, endpoint) in &attached {
        networks.insert(
            network.name.clone(),
            serde_json::json!({
                "Aliases": endpoint.aliases,
                "NetworkID": network.id,
                "Gateway": network.gateway.to_string(),
                "IPAddress": endpoint.ip.to_string(),
                "IPPrefixLen": network.subnet.prefix,
                "MacAddress": endpoint.mac,
            }),
        );
    }
    let primary = attached.first();
    let field = |f: &dyn Fn(&Network, &Endpoint) -> serde_json::Value| {
        primary.map_or(serde_json::Value::from(""), |(n, e)| f(n, e))
    };
    serde_json::json!({
        "Ports": ports,
        "Gateway": field(&|n, _| n.gateway.to_string().into()),
        "IPAddress": field(&|_, e| e.ip.to_string().into()),
        "IPPrefixLen": primary.map_or(0, |(n, _)| n.subnet.prefix),
        "MacAddress": field(&|_, e| e.mac.clone().into()),
        "Networks": networks,
    })
}
// ANCHOR_END: network_settings
