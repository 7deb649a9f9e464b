//! Chapter 06 end to end: bridge networking, driven as a learner would,
//! as root. Every test makes a network namespace of its own
//! ([`support::netns::Netns`]) that is the engine's "host": every engine
//! command runs in it (`nsenter --net=…`), so the bridges, veths, iptables
//! rules, sysctls and published ports are the namespace's and vanish with
//! it; traffic goes only to addresses inside it (containers, bridges,
//! its loopback). The fixture busybox is pulled outside (the fixture
//! registry listens on the machine's loopback) into the same engine root,
//! and tagged `busybox`.
//!
//! A container never asks a DNS server here (its resolver would be the
//! machine's, outside the namespace): names are found in /etc/hosts, and
//! every container `Lab::detach` starts has a resolv.conf naming its own
//! loopback (a bind mount), so a name that is not there fails at once
//! (`wget: bad address`) and no query leaves.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::containers::{wait_bounded, Setup};
use support::netns::Netns;
use support::{require_root, Run, TempDir};

const BIN: &str = "ch06-bridge";
const IMAGE: &str = "busybox";

/// A container that waits, and stops at once on SIGTERM.
fn sleeper() -> Vec<String> {
    shell("trap 'exit 0' TERM; sleep 600 & wait")
}

/// A container serving `text` at `http://IT/` (busybox httpd on port 80).
fn web(text: &str) -> Vec<String> {
    shell(&format!(
        "trap 'exit 0' TERM; mkdir -p /www && echo {text} > /www/index.html && httpd -f -p 80 -h /www & wait"
    ))
}

fn shell(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// A subnet, as `network inspect` gives it.
#[derive(Clone, Copy, Debug)]
struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    fn parse(text: &str) -> Subnet {
        let (addr, prefix) = text.split_once('/').expect("A.B.C.D/N");
        Subnet {
            addr: addr.parse().expect("an IPv4 address"),
            prefix: prefix.parse().expect("a prefix length"),
        }
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// The `n`th address of the subnet.
    fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.addr) & self.mask()) + n)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a failed command must leave as it was: interfaces, rules,
/// addresses given out, networks, containers.
#[derive(Debug, PartialEq)]
struct Snapshot {
    links: Vec<String>,
    rules: Vec<String>,
    allocations: BTreeSet<String>,
    networks: Vec<String>,
    containers: Vec<PathBuf>,
}

/// A test's engine (root, fixture registry, busybox tagged `busybox`)
/// and its namespace. The `Setup` goes first (it kills the containers and
/// detaches their mounts), then the namespace with whatever is left in it.
struct Lab {
    setup: Setup,
    ns: Netns,
    /// `resolv.conf`: `nameserver 127.0.0.1`.
    etc: TempDir,
}

impl Lab {
    /// None (and a loud skip) when not root.
    fn new(test: &str) -> Option<Lab> {
        if !require_root(test) {
            return None;
        }
        let setup = Setup::new(BIN);
        // Outside the namespace: the registry is on the machine's loopback.
        let image = setup.pulled_image();
        setup.run(&["tag", &image, IMAGE]).ok();
        let etc = TempDir::new("ch06-etc");
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        Some(Lab {
            setup,
            ns: Netns::new(),
            etc,
        })
    }

    /// `ch06-bridge ARGS` in the namespace.
    fn run(&self, args: &[&str]) -> Run {
        let run = self.ns.run(&self.setup.engine, BIN, args);
        self.setup.container_dirs();
        run
    }

    /// `ch06-bridge ARGS`, which must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.run(args).ok().to_string()
    }

    /// `run -d --name NAME [FLAGS] busybox COMMAND` (its resolver on its
    /// own loopback); the ID.
    #[track_caller]
    fn detach(&self, name: &str, flags: &[&str], command: &[String]) -> String {
        let resolv = format!(
            "{}:/etc/resolv.conf:ro",
            self.etc.join("resolv.conf").display()
        );
        let mut args = vec!["run", "-d", "--name", name, "-v", &resolv];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend(command.iter().map(String::as_str));
        let id = self.ok(&args).trim().to_string();
        assert_eq!(id.len(), 64, "not an ID: {id:?}");
        id
    }

    /// `exec NAME COMMAND…`.
    fn exec(&self, name: &str, command: &[&str]) -> Run {
        let mut args = vec!["exec", name];
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// A shell command line in the namespace (the engine's host).
    fn sh(&self, script: &str) -> Run {
        self.ns.sh(script)
    }

    /// `http://…` fetched from container `from`, or from the namespace.
    fn fetch(&self, from: Option<&str>, url: &str) -> Run {
        match from {
            Some(name) => self.exec(name, &["timeout", "5", "wget", "-qO-", url]),
            None => self.sh(&format!("timeout 5 busybox wget -qO- {url}")),
        }
    }

    /// Waits (a server may still be starting) until `url`, fetched from
    /// `from`, answers `want`.
    #[track_caller]
    fn assert_serves(&self, from: Option<&str>, url: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.fetch(from, url);
            if got.code == 0 && got.stdout.trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} from {}: expected {want:?}, got exit {}\nstdout: {}\nstderr: {}",
                from.unwrap_or("the namespace"),
                got.code,
                got.stdout,
                got.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ping -c1` from container `from`: does `to` answer?
    fn pings(&self, from: &str, to: &str) -> bool {
        self.exec(from, &["ping", "-c1", "-W1", to]).code == 0
    }

    /// `network inspect NAME`, its one object.
    #[track_caller]
    fn network(&self, name: &str) -> Value {
        let out = self.ok(&["network", "inspect", name]);
        let json: Value = serde_json::from_str(&out).expect("network inspect prints JSON");
        json[0].clone()
    }

    fn subnet(&self, network: &str) -> Subnet {
        Subnet::parse(
            self.network(network)["IPAM"]["Config"][0]["Subnet"]
                .as_str()
                .expect("a subnet"),
        )
    }

    fn gateway(&self, network: &str) -> Ipv4Addr {
        self.network(network)["IPAM"]["Config"][0]["Gateway"]
            .as_str()
            .expect("a gateway")
            .parse()
            .expect("an IPv4 gateway")
    }

    fn bridge(&self, network: &str) -> String {
        self.network(network)["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .expect("a bridge name")
            .to_string()
    }

    /// The network's containers, by name, with their addresses.
    fn endpoints(&self, network: &str) -> BTreeMap<String, Ipv4Addr> {
        endpoints_of(&self.network(network))
    }

    /// The container's address on `network`, from `inspect`.
    #[track_caller]
    fn address(&self, container: &str, network: &str) -> Ipv4Addr {
        let out = self.ok(&["inspect", container]);
        let json: Value = serde_json::from_str(&out).expect("inspect prints JSON");
        let ip = &json[0]["NetworkSettings"]["Networks"][network]["IPAddress"];
        ip.as_str()
            .unwrap_or_else(|| panic!("{container} has no address on {network}: {out}"))
            .parse()
            .expect("an IPv4 address")
    }

    /// The IPv4 address of `interface` inside the container, if any.
    fn inside_address(&self, container: &str, interface: &str) -> Option<Ipv4Addr> {
        let out = self.exec(container, &["ip", "-o", "-4", "addr", "show", interface]);
        out.stdout
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next()?.parse().ok())
    }

    /// The namespace's interfaces, by name.
    fn links(&self) -> Vec<String> {
        link_names(self.sh("ip -o link").ok())
    }

    /// The namespace's veths.
    fn veths(&self) -> Vec<String> {
        link_names(self.sh("ip -o link show type veth").ok())
    }

    /// The namespace's veths once at most `left` remain: a removed
    /// container's pair goes with its network namespace, which the kernel
    /// tears down a moment after `rm` (bounded: 10 s, then what is there).
    fn veths_once_torn_down(&self, left: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let veths = self.veths();
            if veths.len() <= left || Instant::now() >= deadline {
                return veths;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every rule of the namespace's iptables, `TABLE -A CHAIN …`.
    fn rules(&self) -> Vec<String> {
        let mut table = String::new();
        let mut rules = Vec::new();
        for line in self.sh("iptables-save").ok().lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_string();
            } else if line.starts_with("-A ") {
                rules.push(format!("{table} {line}"));
            }
        }
        rules.sort();
        rules
    }

    /// The networks `network ls` lists, host and none aside.
    fn network_names(&self) -> Vec<String> {
        self.ok(&["network", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .filter(|n| n != "host" && n != "none")
            .collect()
    }

    /// `ps -a`'s NAMES.
    fn names(&self) -> Vec<String> {
        self.ok(&["ps", "-a"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().last().map(String::from))
            .collect()
    }

    fn snapshot(&self) -> Snapshot {
        let networks = self.network_names();
        let mut allocations = BTreeSet::new();
        for network in &networks {
            for (name, ip) in self.endpoints(network) {
                allocations.insert(format!("{network}: {name} {ip}"));
            }
        }
        Snapshot {
            links: self.links(),
            rules: self.rules(),
            allocations,
            networks,
            containers: self.setup.container_dirs(),
        }
    }

    /// The host port `port NAME PRIVATE` reports.
    #[track_caller]
    fn host_port(&self, name: &str, private: &str) -> u16 {
        let out = self.ok(&["port", name, private]);
        let (ip, port) = out.trim().rsplit_once(':').expect("IP:PORT");
        assert_eq!(ip, "0.0.0.0", "{out}");
        port.parse().expect("a port number")
    }
}

fn endpoints_of(network: &Value) -> BTreeMap<String, Ipv4Addr> {
    let mut found = BTreeMap::new();
    if let Some(containers) = network["Containers"].as_object() {
        for c in containers.values() {
            let ip = c["IPv4Address"].as_str().expect("IPv4Address");
            let ip = ip.split('/').next().unwrap().parse().expect("an address");
            found.insert(c["Name"].as_str().expect("Name").to_string(), ip);
        }
    }
    found
}

/// The names of `ip -o link`'s lines (`3: veth1234@if2: …` is `veth1234`).
fn link_names(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// No rule of `rules` names `needle`.
#[track_caller]
fn assert_no_rule_names(rules: &[String], needle: &str) {
    let naming: Vec<&String> = rules.iter().filter(|r| r.contains(needle)).collect();
    assert!(naming.is_empty(), "rules still name {needle}: {naming:#?}");
}

// 1.
#[test]
fn two_containers_on_the_default_bridge_reach_each_other_by_address_not_by_name() {
    let Some(lab) =
        Lab::new("two_containers_on_the_default_bridge_reach_each_other_by_address_not_by_name")
    else {
        return;
    };
    lab.detach("web", &[], &web("hello-from-web"));
    lab.detach("client", &[], &sleeper());

    let subnet = lab.subnet("bridge");
    let endpoints = lab.endpoints("bridge");
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    let (web_ip, client_ip) = (endpoints["web"], endpoints["client"]);
    assert_ne!(web_ip, client_ip);
    for ip in [web_ip, client_ip] {
        assert!(subnet.contains(ip), "{ip} is not in {subnet}");
        assert_ne!(ip, lab.gateway("bridge"), "a container got the gateway");
    }
    // What inspect says is what the container has.
    assert_eq!(lab.address("web", "bridge"), web_ip);
    assert_eq!(lab.inside_address("client", "eth0"), Some(client_ip));

    assert!(
        lab.pings("client", &web_ip.to_string()),
        "no ping to {web_ip}"
    );
    lab.assert_serves(
        Some("client"),
        &format!("http://{web_ip}/"),
        "hello-from-web",
    );

    // Not by name: the default bridge writes no peers into /etc/hosts.
    let hosts = lab.exec("client", &["cat", "/etc/hosts"]);
    assert!(!hosts.ok().contains("web"), "{}", hosts.stdout);
    let by_name = lab.fetch(Some("client"), "http://web/");
    assert_ne!(by_name.code, 0, "web resolved: {}", by_name.stdout);
    assert!(
        by_name.stderr.contains("bad address"),
        "expected `wget: bad address`: {}",
        by_name.stderr
    );
}

// 2.
#[test]
fn a_user_network_resolves_names_and_aliases_isolates_networks_and_connect_joins_them() {
    let Some(lab) = Lab::new(
        "a_user_network_resolves_names_and_aliases_isolates_networks_and_connect_joins_them",
    ) else {
        return;
    };
    let id = lab.ok(&["network", "create", "app"]);
    assert_eq!(id.trim().len(), 64, "network create prints the ID: {id}");
    lab.detach(
        "db",
        &["--network", "app", "--network-alias", "database"],
        &web("db"),
    );
    lab.detach("client", &["--network", "app"], &sleeper());
    lab.assert_serves(Some("client"), "http://db/", "db");
    lab.assert_serves(Some("client"), "http://database/", "db");

    // A container started later is found by those already running: their
    // /etc/hosts is rewritten in place (a bind mount keeps its inode).
    let inode = |name: &str| {
        lab.exec(name, &["stat", "-c", "%i", "/etc/hosts"])
            .ok()
            .trim()
            .to_string()
    };
    let before = inode("db");
    lab.detach("late", &["--network", "app"], &web("late"));
    assert_eq!(
        inode("db"),
        before,
        "db's /etc/hosts was replaced, not rewritten"
    );
    let late_ip = lab.address("late", "app");
    let hosts = lab.exec("db", &["cat", "/etc/hosts"]).ok().to_string();
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&late_ip.to_string())
                && l.split_whitespace().any(|w| w == "late")),
        "db's /etc/hosts lacks late ({late_ip}):\n{hosts}"
    );
    lab.assert_serves(Some("db"), "http://late/", "late");
    lab.assert_serves(Some("late"), "http://database/", "db");

    // Two user networks cannot reach each other…
    lab.ok(&["network", "create", "other"]);
    lab.detach("outsider", &["--network", "other"], &sleeper());
    let db_ip = lab.address("db", "app");
    assert!(
        !lab.pings("outsider", &db_ip.to_string()),
        "other reached app's {db_ip}"
    );
    assert!(!lab.pings("db", &lab.address("outsider", "other").to_string()));

    // …until the container joins the other network too (at once: eth1).
    lab.ok(&["network", "connect", "other", "db"]);
    let db_other = lab.address("db", "other");
    assert!(lab.subnet("other").contains(db_other), "{db_other}");
    assert_eq!(lab.inside_address("db", "eth1"), Some(db_other));
    assert_eq!(lab.inside_address("db", "eth0"), Some(db_ip), "eth0 kept");
    lab.assert_serves(Some("outsider"), "http://db/", "db");

    lab.ok(&["network", "disconnect", "other", "db"]);
    assert_eq!(
        lab.inside_address("db", "eth1"),
        None,
        "eth1 is still there"
    );
    assert!(!lab
        .exec("db", &["ip", "link", "show", "eth1"])
        .stdout
        .contains("eth1"));
    assert!(
        !lab.pings("outsider", &db_other.to_string()),
        "{db_other} still answers"
    );
    assert!(!lab.endpoints("other").contains_key("db"));
    let hosts = lab
        .exec("outsider", &["cat", "/etc/hosts"])
        .ok()
        .to_string();
    assert!(
        !hosts.contains(&db_other.to_string()),
        "outsider still lists db:\n{hosts}"
    );
    // Still on app.
    lab.assert_serves(Some("client"), "http://db/", "db");

    // A gap left by a disconnect is filled: with eth1 gone, joining
    // two networks gives eth1 then eth2 (a name taken twice would be
    // refused by the kernel: "File exists").
    lab.ok(&["network", "create", "third"]);
    lab.ok(&["network", "connect", "other", "db"]);
    lab.ok(&["network", "connect", "third", "db"]);
    assert_eq!(
        lab.inside_address("db", "eth1"),
        Some(lab.address("db", "other"))
    );
    assert_eq!(
        lab.inside_address("db", "eth2"),
        Some(lab.address("db", "third"))
    );
    lab.ok(&["network", "disconnect", "other", "db"]);
    lab.ok(&["network", "connect", "other", "db"]);
    assert_eq!(
        lab.inside_address("db", "eth1"),
        Some(lab.address("db", "other"))
    );
}

// 3.
#[test]
fn network_none_has_only_lo_and_network_host_is_the_hosts_own() {
    let Some(lab) = Lab::new("network_none_has_only_lo_and_network_host_is_the_hosts_own") else {
        return;
    };
    let before = lab.snapshot();
    let none = lab.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(link_names(&none), vec!["lo"], "{none}");
    assert_eq!(lab.snapshot(), before, "--network none made something");

    // A bridge made once; the host's view has it. The container's veth
    // pair goes with its namespace, which the kernel tears down a moment
    // after `rm`: wait for it (bounded), so that both views are taken of
    // the same host.
    lab.ok(&["run", "--rm", IMAGE, "true"]);
    let bridge = lab.bridge("bridge");
    let deadline = Instant::now() + Duration::from_secs(10);
    let links = loop {
        let links = lab.links();
        if !links.iter().any(|l| l.starts_with("veth")) {
            break links;
        }
        assert!(
            Instant::now() < deadline,
            "a veth outlived its container by 10 s: {links:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(links.contains(&bridge), "{links:?}");
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let seen = lab.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        IMAGE,
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(
        link_names(&seen),
        links,
        "--network host sees other interfaces"
    );
    let seen = lab.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        IMAGE,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        seen, resolv,
        "--network host: not the host's /etc/resolv.conf"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        resolv,
        "the host's /etc/resolv.conf changed"
    );
    let id = lab.ok(&[
        "run",
        "-d",
        "--name",
        "hosted",
        "--network",
        "host",
        IMAGE,
        "sleep",
        "600",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let json: Value = serde_json::from_str(&lab.ok(&["inspect", "hosted"])).unwrap();
    assert_eq!(json[0]["HostConfig"]["NetworkMode"], "host");
    lab.ok(&["rm", "-f", "hosted"]);
}

// 4.
#[test]
fn published_ports_answer_from_the_host_a_peer_and_the_container_itself() {
    let Some(lab) =
        Lab::new("published_ports_answer_from_the_host_a_peer_and_the_container_itself")
    else {
        return;
    };
    lab.detach("web", &["-p", "8080:80"], &web("published"));
    lab.detach("client", &[], &sleeper());
    let gateway = lab.gateway("bridge");
    lab.assert_serves(None, "http://127.0.0.1:8080/", "published");
    lab.assert_serves(
        Some("client"),
        &format!("http://{gateway}:8080/"),
        "published",
    );
    lab.assert_serves(Some("web"), &format!("http://{gateway}:8080/"), "published");
    assert_eq!(lab.ok(&["port", "web"]).trim(), "80/tcp -> 0.0.0.0:8080");

    // -p 80: a free host port, reported and answering.
    lab.detach("auto", &["-p", "80"], &web("auto"));
    let port = lab.host_port("auto", "80");
    assert_ne!(port, 8080);
    assert_eq!(
        lab.ok(&["port", "auto"]).trim(),
        format!("80/tcp -> 0.0.0.0:{port}")
    );
    let ps = lab.ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.ends_with(" auto"))
        .expect("auto in ps");
    assert!(line.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    lab.assert_serves(None, &format!("http://127.0.0.1:{port}/"), "auto");

    // -P: the image's EXPOSE.
    let context = TempDir::new("ch06-expose");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nEXPOSE 80\nCOPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    std::fs::write(context.join("index.html"), "exposed\n").unwrap();
    lab.ok(&[
        "build",
        "-q",
        "-t",
        "exposed",
        context.path().to_str().unwrap(),
    ]);
    lab.ok(&["run", "-d", "--name", "all", "-P", "exposed"]);
    let json: Value = serde_json::from_str(&lab.ok(&["inspect", "all"])).unwrap();
    let binding = &json[0]["NetworkSettings"]["Ports"]["80/tcp"][0];
    let port: u16 = binding["HostPort"]
        .as_str()
        .expect("80/tcp published")
        .parse()
        .unwrap();
    assert_eq!(lab.host_port("all", "80/tcp"), port);
    lab.assert_serves(None, &format!("http://127.0.0.1:{port}/"), "exposed");

    // A taken host port: refused before the container starts, nothing left.
    let before = lab.snapshot();
    let refused = lab.run(&[
        "run", "-d", "--name", "clash", "-p", "8080:80", IMAGE, "sleep", "600",
    ]);
    let line = refused.fails_with(125);
    assert!(
        line.contains("port is already allocated") && line.contains("8080"),
        "{line}"
    );
    assert!(!lab.names().contains(&"clash".to_string()));
    assert_eq!(lab.snapshot(), before, "a refused -p left something");

    // Taken by a program of the host's, not by a container.
    let mut listener = lab
        .ns
        .command("busybox", &["nc", "-l", "-p", "9090"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("busybox nc");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.sh("ss -ltnH 'sport = :9090'").ok().contains("9090") {
        assert!(Instant::now() < deadline, "nc never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = lab.run(&[
        "run", "-d", "--name", "clash", "-p", "9090:80", IMAGE, "sleep", "600",
    ]);
    let line = refused.fails_with(125);
    assert!(
        line.contains("port is already allocated") && line.contains("9090"),
        "{line}"
    );
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(lab.snapshot(), before, "a refused -p left something");
    assert_no_rule_names(&lab.rules(), "--dport 9090");
}

// 5.
#[test]
fn stop_and_start_keep_the_address_the_names_and_the_published_port() {
    let Some(lab) = Lab::new("stop_and_start_keep_the_address_the_names_and_the_published_port")
    else {
        return;
    };
    lab.ok(&["network", "create", "app"]);
    lab.detach(
        "alpha",
        &["--network", "app", "-p", "8080:80"],
        &web("alpha"),
    );
    lab.detach("beta", &["--network", "app"], &sleeper());
    let ip = lab.address("alpha", "app");
    lab.assert_serves(None, "http://127.0.0.1:8080/", "alpha");

    lab.ok(&["stop", "alpha"]);
    assert_no_rule_names(&lab.rules(), "--dport 8080");
    lab.ok(&["start", "alpha"]);
    assert_eq!(lab.address("alpha", "app"), ip, "a new address after start");
    assert_eq!(lab.inside_address("alpha", "eth0"), Some(ip));
    assert!(lab.pings("beta", "alpha"), "beta lost alpha's name");
    assert!(lab.pings("alpha", "beta"), "alpha lost beta's name");
    lab.assert_serves(Some("beta"), "http://alpha/", "alpha");
    lab.assert_serves(None, "http://127.0.0.1:8080/", "alpha");
}

// 6.
#[test]
fn twenty_containers_at_once_get_twenty_addresses_and_leave_nothing() {
    let Some(lab) = Lab::new("twenty_containers_at_once_get_twenty_addresses_and_leave_nothing")
    else {
        return;
    };
    lab.ok(&["network", "create", "many"]);
    let subnet = lab.subnet("many");
    let bridge = lab.bridge("many");
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            lab.ns
                .engine_command(
                    &lab.setup.engine,
                    BIN,
                    &[
                        "run",
                        "-d",
                        "--name",
                        name,
                        "--network",
                        "many",
                        IMAGE,
                        "sleep",
                        "600",
                    ],
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn run -d")
        })
        .collect();
    for child in children {
        wait_bounded(child, Duration::from_secs(60)).ok();
    }
    lab.setup.container_dirs();
    let endpoints = lab.endpoints("many");
    assert_eq!(endpoints.len(), 20, "{endpoints:?}");
    let addresses: BTreeSet<Ipv4Addr> = endpoints.values().copied().collect();
    assert_eq!(addresses.len(), 20, "an address given twice: {endpoints:?}");
    assert!(
        addresses.iter().all(|ip| subnet.contains(*ip)),
        "{endpoints:?}"
    );
    assert_eq!(lab.veths().len(), 20);

    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    lab.ok(&rm);
    assert_eq!(
        lab.veths_once_torn_down(0),
        Vec::<String>::new(),
        "veths left"
    );
    let bridges = [lab.bridge("bridge"), bridge.clone()];
    for link in lab.links() {
        assert!(link == "lo" || bridges.contains(&link), "{link} left");
    }
    assert_eq!(lab.endpoints("many"), BTreeMap::new(), "addresses left");
    let rules = lab.rules();
    for ip in &addresses {
        assert_no_rule_names(&rules, &format!("{ip}/"));
        assert_no_rule_names(&rules, &format!("{ip}:"));
    }
    let masquerade = format!("nat -A CRABBOX-POSTROUTING -s {subnet} ! -o {bridge} -j MASQUERADE");
    assert!(rules.contains(&masquerade), "no {masquerade}: {rules:#?}");
    lab.setup.assert_nothing_left();

    assert_eq!(lab.ok(&["network", "rm", "many"]).trim(), "many");
    assert!(!lab.links().contains(&bridge), "{bridge} left");
    let rules = lab.rules();
    assert_no_rule_names(&rules, &bridge);
    assert_no_rule_names(&rules, &subnet.to_string());
}

// 7.
#[test]
fn rm_f_after_the_monitor_was_killed_leaves_nothing() {
    let Some(lab) = Lab::new("rm_f_after_the_monitor_was_killed_leaves_nothing") else {
        return;
    };
    lab.ok(&["network", "create", "app"]);
    lab.detach("peer", &["--network", "app"], &sleeper());
    let id = lab.detach("victim", &["--network", "app", "-p", "8080:80"], &sleeper());
    let ip = lab.address("victim", "app");
    let hosts = lab.exec("peer", &["cat", "/etc/hosts"]).ok().to_string();
    assert!(hosts.contains("victim"), "{hosts}");

    let state = lab.setup.state(&id);
    let monitor = state["monitor_pid"]
        .as_i64()
        .expect("state.json: monitor_pid") as i32;
    let pid = state["pid"].as_i64().expect("state.json: pid") as i32;
    assert!(
        lab.ns.holds(monitor),
        "the monitor is not in the test's namespace"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.ns.holds(monitor) {
        assert!(Instant::now() < deadline, "the monitor did not die");
        std::thread::sleep(Duration::from_millis(20));
    }

    lab.ok(&["rm", "-f", "victim"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "the container's process survived rm -f"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!lab.names().contains(&"victim".to_string()));
    assert!(!lab.setup.containers().join(&id).exists());
    let endpoints = lab.endpoints("app");
    assert_eq!(
        endpoints.keys().collect::<Vec<_>>(),
        vec!["peer"],
        "allocation left"
    );
    let rules = lab.rules();
    assert_no_rule_names(&rules, &format!("{ip}/"));
    assert_no_rule_names(&rules, &format!("{ip}:"));
    assert_no_rule_names(&rules, "--dport 8080");
    let veths = lab.veths_once_torn_down(1);
    assert_eq!(veths.len(), 1, "victim's veth left: {veths:?}");
    let hosts = lab.exec("peer", &["cat", "/etc/hosts"]).ok().to_string();
    assert!(
        !hosts.contains("victim") && !hosts.contains(&ip.to_string()),
        "{hosts}"
    );
    // Its host port is free again.
    lab.detach("again", &["-p", "8080:80"], &web("again"));
    lab.assert_serves(None, "http://127.0.0.1:8080/", "again");
}

// 8.
#[test]
fn a_forward_policy_of_drop_does_not_cut_containers_off() {
    let Some(lab) = Lab::new("a_forward_policy_of_drop_does_not_cut_containers_off") else {
        return;
    };
    lab.sh("iptables -P FORWARD DROP").ok();
    lab.ok(&["network", "create", "app"]);
    lab.detach(
        "server",
        &["--network", "app", "-p", "8080:80"],
        &web("server"),
    );
    lab.detach("client", &["--network", "app"], &sleeper());
    let gateway = lab.gateway("app");
    assert!(lab.pings("client", "server"), "no ping to server");
    assert!(lab.pings("server", "client"), "no ping to client");
    assert!(
        lab.pings("client", &gateway.to_string()),
        "no ping to the gateway"
    );
    lab.assert_serves(Some("client"), "http://server/", "server");
    lab.assert_serves(Some("client"), &format!("http://{gateway}:8080/"), "server");
    lab.assert_serves(None, "http://127.0.0.1:8080/", "server");
    // The default bridge too.
    lab.detach("one", &[], &web("one"));
    lab.detach("two", &[], &sleeper());
    let one = lab.address("one", "bridge");
    assert!(lab.pings("two", &one.to_string()));
    assert!(lab.pings("two", &lab.gateway("bridge").to_string()));
    lab.assert_serves(Some("two"), &format!("http://{one}/"), "one");
    let policy = lab.sh("iptables -S FORWARD").ok().to_string();
    assert!(policy.lines().next() == Some("-P FORWARD DROP"), "{policy}");
}

// 9.
#[test]
fn bad_input_is_one_line_naming_it_and_leaves_nothing_half_made() {
    let Some(lab) = Lab::new("bad_input_is_one_line_naming_it_and_leaves_nothing_half_made") else {
        return;
    };
    lab.ok(&["run", "--rm", IMAGE, "true"]); // the default bridge exists
    lab.ok(&["network", "create", "app"]);
    let app = lab.subnet("app");
    let taken = app.nth(10);
    lab.detach(
        "holder",
        &["--network", "app", "--ip", &taken.to_string()],
        &sleeper(),
    );
    assert_eq!(lab.address("holder", "app"), taken);
    // A route of the host's own (the namespace's), for create to avoid.
    lab.sh(
        "ip link add cbtest0 type veth peer name cbtest1 && ip addr add 10.213.0.1/16 dev cbtest0 \
         && ip link set cbtest0 up && ip link set cbtest1 up",
    )
    .ok();
    let before = lab.snapshot();
    let bridge_ip = lab.subnet("bridge").nth(50).to_string();
    let outside = "192.0.2.10".to_string();
    let taken = taken.to_string();
    let overlap = format!("{}/24", app.nth(0));
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (
            vec![
                "run",
                "-d",
                "--name",
                "bad1",
                "--network",
                "nosuch",
                IMAGE,
                "true",
            ],
            125,
            vec!["nosuch"],
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "bad2",
                "--network",
                "container:holder",
                IMAGE,
                "true",
            ],
            125,
            vec!["container:holder"],
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "bad3",
                "--network",
                "app",
                "--ip",
                &outside,
                IMAGE,
                "true",
            ],
            125,
            vec![&outside],
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "bad4",
                "--network",
                "app",
                "--ip",
                &taken,
                IMAGE,
                "true",
            ],
            125,
            vec![&taken],
        ),
        (
            vec![
                "run", "-d", "--name", "bad5", "--ip", &bridge_ip, IMAGE, "true",
            ],
            125,
            vec!["IP address", "user defined"],
        ),
        (
            vec![
                "run", "-d", "--name", "bad6", "-p", "70000:80", IMAGE, "true",
            ],
            125,
            vec!["70000"],
        ),
        (
            vec!["run", "-d", "--name", "bad7", "-p", "abc", IMAGE, "true"],
            125,
            vec!["abc"],
        ),
        (
            vec!["network", "create", "--subnet", &overlap, "clash"],
            125,
            vec![&overlap, "app"],
        ),
        (
            vec!["network", "create", "--subnet", "10.213.5.0/24", "clash"],
            125,
            vec!["10.213.0.0/16", "cbtest0"],
        ),
        (
            vec!["network", "create", "--subnet", "10.0.0.0/33", "clash"],
            125,
            vec!["10.0.0.0/33"],
        ),
        (
            vec!["network", "create", "--subnet", "nonsense", "clash"],
            125,
            vec!["nonsense"],
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.214.0.0/24",
                "--gateway",
                "10.215.0.1",
                "clash",
            ],
            125,
            vec!["10.215.0.1"],
        ),
        (vec!["network", "create", "app"], 125, vec!["app", "exists"]),
        (vec!["network", "rm", "bridge"], 1, vec!["bridge"]),
        (vec!["network", "rm", "app"], 1, vec!["app"]),
        (
            vec!["network", "connect", "app", "holder"],
            125,
            vec!["holder", "app"],
        ),
    ];
    let mut failures = Vec::new();
    for (args, code, words) in &cases {
        let out = lab.run(args);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let line = out.fails_with(*code).to_string();
            for word in words {
                assert!(line.contains(word), "{line:?} does not name {word}");
            }
            assert_eq!(lab.snapshot(), before, "something was left");
        }));
        if let Err(e) = result {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {why}", args.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The network in use still works.
    lab.detach("late", &["--network", "app"], &sleeper());
    assert!(lab.pings("late", "holder"));
}

// 10.
#[test]
fn explain_shows_the_veth_and_the_dnat_commands() {
    let Some(lab) = Lab::new("explain_shows_the_veth_and_the_dnat_commands") else {
        return;
    };
    let out = lab.run(&["--explain", "run", "--rm", "-p", "8080:80", IMAGE, "true"]);
    out.ok();
    let text = format!("{}{}", out.stdout, out.stderr);
    let veth = text
        .lines()
        .filter_map(|l| l.split_once("$ ip link add veth").map(|(_, rest)| rest))
        .find_map(|rest| {
            rest.split_once(" type veth peer name eth0 netns ")
                .map(|(_, pid)| pid)
        })
        .unwrap_or_else(|| {
            panic!("no `ip link add veth… type veth peer name eth0 netns PID`:\n{text}")
        });
    assert!(
        !veth.trim().is_empty() && veth.trim().chars().all(|c| c.is_ascii_digit()),
        "not a PID: {veth:?}"
    );
    let subnet = lab.subnet("bridge");
    let dnat = text
        .lines()
        .filter_map(|l| l.split_once("$ iptables -t nat ").map(|(_, rest)| rest))
        .filter(|rule| rule.contains("--dport 8080") && rule.contains("-j DNAT"))
        .find_map(|rule| {
            rule.split_once("--to-destination ")
                .map(|(_, to)| to.trim())
        })
        .unwrap_or_else(|| panic!("no `iptables -t nat … --dport 8080 -j DNAT`:\n{text}"));
    let (ip, port) = dnat.split_once(':').expect("IP:PORT");
    assert_eq!(port, "80");
    assert!(subnet.contains(ip.parse().expect("an address")), "{dnat}");
    // --rm took it all back.
    assert_eq!(lab.veths(), Vec::<String>::new());
    assert_no_rule_names(&lab.rules(), "--dport 8080");
    assert_eq!(lab.endpoints("bridge"), BTreeMap::new());
}

#[test]
fn the_default_network_keeps_docker0s_range_whatever_is_created_first() {
    let Some(lab) = Lab::new("the_default_network_keeps_docker0s_range_whatever_is_created_first")
    else {
        return;
    };
    // A user network made before any container ever used `bridge`.
    lab.ok(&["network", "create", "first"]);
    assert_eq!(lab.subnet("first").to_string(), "172.18.0.0/16");
    assert_eq!(lab.subnet("bridge").to_string(), "172.17.0.0/16");
}
