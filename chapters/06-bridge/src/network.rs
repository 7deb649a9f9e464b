//! A network's definition on disk: `ROOT/networks/NAME.json`.
//!
//! A docker network is not a thing in the kernel: it is a *record* the
//! engine keeps. The kernel objects that make it work (a Linux bridge,
//! veth pairs, iptables rules) are built from the record when they are
//! needed, and can be rebuilt from it after a reboot wipes them. So the
//! record holds everything: the range of addresses, the gateway, the
//! name of the bridge and, in `endpoints`, which container has which
//! address ([`crate::ipam`] fills those in).
//!
//! ```text
//! ROOT/networks/.lock         held for every read-modify-write below
//! ROOT/networks/bridge.json   the default network, made on first use
//! ROOT/networks/NAME.json     one per `network create NAME`
//! ```
//!
//! Two engines may run at once (two `run`s in two terminals), and each
//! changes a network file by reading it, changing it and writing it back.
//! Without a lock both could read the same file, both give out
//! `172.17.0.2`, and the second write would silently undo the first. So
//! every such change happens while holding `ROOT/networks/.lock`
//! ([`Networks::lock`]), and every write is chapter 1's atomic
//! temp + fsync + rename, so a crash never leaves half a file.

use crate::subnet::{self, Cidr};
use ch01_images::durable;
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The default network every container joins unless told otherwise.
pub const DEFAULT: &str = "bridge";
/// The Linux bridge of the default network (docker's is `docker0`).
pub const DEFAULT_BRIDGE: &str = "crabbox0";

/// Names `--network` gives other meanings to, so no network may have them.
const RESERVED: [&str; 2] = ["host", "none"];

/// Linux interface names are at most 15 bytes (`IFNAMSIZ` is 16, with
/// the final NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// One network: a Linux bridge, a subnet, and who is attached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, random.
    pub id: String,
    /// Always `bridge` here.
    pub driver: String,
    /// The Linux bridge: `crabbox0`, or `cb-<12 hex of the ID>`.
    pub bridge: String,
    pub subnet: Cidr,
    pub gateway: Ipv4Addr,
    /// `--internal`: no way out of the network.
    pub internal: bool,
    /// RFC 3339.
    pub created: String,
    /// Attached containers, by container ID.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// A container's place on a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container's name (for /etc/hosts and `network inspect`).
    pub container: String,
    pub ip: Ipv4Addr,
    /// Locally administered: `02:42:…`.
    pub mac: String,
    /// `--network-alias`: more names for it on this network.
    pub aliases: Vec<String>,
    /// Its interface inside the container: `eth0`, `eth1`…
    pub interface: String,
    /// The host end of its veth pair: `veth` + 7 hex.
    pub host_interface: String,
}

/// The directory of network files, `ROOT/networks/`.
#[derive(Clone, Debug)]
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    /// Opens `ROOT/networks/`, making it (mode 0700, the engine's own, as
    /// the rest of its root) the first time.
    pub fn open(root: &Path) -> Result<Networks> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = root.join("networks");
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .context("creating", &dir)?;
        }
        Ok(Networks { dir })
    }

    /// `ROOT/networks`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive lock on `ROOT/networks/.lock`, waiting for any
    /// other engine that holds it. Hold it across every read-modify-write
    /// of a network file (read, allocate, save), and drop it after.
    pub fn lock(&self) -> Result<durable::Lock> {
        durable::lock(&self.dir.join(".lock"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every network, sorted by name. A damaged file is reported on stderr
    /// and skipped, so one bad file never stops `network ls` or a `run`.
    pub fn list(&self) -> Result<Vec<Network>> {
        let mut networks = Vec::new();
        for entry in fs::read_dir(&self.dir).context("reading", &self.dir)? {
            let path = entry.context("reading", &self.dir)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // `.lock` and the temporary files of an atomic write start
            // with a dot; network names never do.
            let Some(name) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match read(&path) {
                Ok(network) => networks.push(network),
                Err(e) => eprintln!("WARNING: skipping network file: {e}"),
            }
        }
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(networks)
    }

    /// The network called `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<Network>> {
        // An invalid name (`../x`) can name no network, and must never
        // become a path.
        if !valid_name(name) {
            return Ok(None);
        }
        let path = self.path(name);
        if !path.exists() {
            return Ok(None);
        }
        read(&path).map(Some)
    }

    // ANCHOR: find
    /// The network `name_or_id` designates, found as docker finds it: by
    /// full ID, then by name, then by a prefix of the ID that only one
    /// network has (`network inspect 3f2a`).
    pub fn find(&self, name_or_id: &str) -> Result<Network> {
        let not_found = || Error::new(format!("network {name_or_id} not found — see network ls"));
        if name_or_id.is_empty() {
            return Err(not_found());
        }
        let all = self.list()?;
        if let Some(network) = all.iter().find(|n| n.id == name_or_id) {
            return Ok(network.clone());
        }
        if let Some(network) = all.iter().find(|n| n.name == name_or_id) {
            return Ok(network.clone());
        }
        let mut by_prefix = all.into_iter().filter(|n| n.id.starts_with(name_or_id));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(network), None) => Ok(network),
            (None, _) => Err(not_found()),
            (Some(_), Some(_)) => Err(Error::new(format!(
                "network {name_or_id} is ambiguous: several network IDs start with it — give more of the ID"
            ))),
        }
    }
    // ANCHOR_END: find

    /// Writes `network` to `NAME.json` atomically (chapter 1's temp +
    /// fsync + rename). Call it holding [`Networks::lock`].
    pub fn save(&self, network: &Network) -> Result<()> {
        let path = self.path(&network.name);
        let mut json = serde_json::to_vec_pretty(network).expect("a network serializes");
        json.push(b'\n');
        durable::write_atomically(&path, &json)
    }

    /// Deletes the network's file. Only the record: the caller first
    /// checks that no container is attached and takes down the bridge
    /// and its iptables rules. Call it holding [`Networks::lock`].
    pub fn remove(&self, name: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::new(format!(
                "network {name} not found — see network ls"
            )));
        }
        let path = self.path(name);
        explain::step(
            &format!("forgetting network {name}"),
            Some(&format!(
                "rm {}",
                explain::shell_quote(&path.to_string_lossy())
            )),
        );
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(format!(
                "network {name} not found — see network ls"
            ))),
            Err(e) => Err(e).context("removing", &path),
        }
    }

    // ANCHOR: create
    /// `network create`: checks the name, picks the subnet and gateway,
    /// draws an ID, and saves the new network (no bridge yet: that is
    /// made when the first container joins). `taken_by_host` is
    /// [`subnet::host_ranges`]. Call it holding [`Networks::lock`], so two
    /// `network create`s at once cannot take the same name or range.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Cidr>,
        gateway: Option<Ipv4Addr>,
        internal: bool,
        taken_by_host: &[(Cidr, String)],
    ) -> Result<Network> {
        if !valid_name(name) {
            return Err(Error::new(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if RESERVED.contains(&name) {
            return Err(Error::new(format!(
                "network name {name} is reserved: `--network {name}` has its own meaning — choose another name"
            )));
        }
        // The default network always exists for docker, even before it
        // is written here on first use: only `ensure_default` makes it.
        if name == DEFAULT || self.get(name)?.is_some() {
            return Err(Error::new(format!(
                "network with name {name} already exists"
            )));
        }
        self.make(name, subnet, gateway, internal, taken_by_host)
    }
    // ANCHOR_END: create

    /// The default network, `bridge`, made on first use with docker's
    /// `172.17.0.0/16` when the host leaves that free, else with the first
    /// free pool. Call it holding [`Networks::lock`].
    pub fn ensure_default(&self, taken_by_host: &[(Cidr, String)]) -> Result<Network> {
        if let Some(network) = self.get(DEFAULT)? {
            return Ok(network);
        }
        // `subnet: None` picks the first free default pool, and the first
        // pool is 172.17.0.0/16.
        self.make(DEFAULT, None, None, false, taken_by_host)
    }

    /// The part of `create` that `ensure_default` shares.
    fn make(
        &self,
        name: &str,
        subnet: Option<Cidr>,
        gateway: Option<Ipv4Addr>,
        internal: bool,
        taken_by_host: &[(Cidr, String)],
    ) -> Result<Network> {
        let others = self.list()?;
        let subnet = match subnet {
            Some(wanted) => {
                check_size(&wanted)?;
                // Our own networks first: their bridges' routes are among
                // the host's too, and "network web" is the clearer name.
                if let Some(other) = others.iter().find(|n| n.subnet.overlaps(&wanted)) {
                    return Err(Error::new(format!(
                        "subnet {wanted} overlaps network {} ({}): choose another with --subnet",
                        other.name, other.subnet
                    )));
                }
                subnet::check_free(&wanted, taken_by_host)?;
                wanted
            }
            None => {
                if gateway.is_some() {
                    return Err(Error::new(
                        "--gateway needs --subnet: give the subnet the gateway belongs to",
                    ));
                }
                let mut taken = taken_by_host.to_vec();
                taken.extend(
                    others
                        .iter()
                        .map(|n| (n.subnet, format!("network {}", n.name))),
                );
                subnet::choose(&taken)?
            }
        };
        let gateway = match gateway {
            Some(gateway) => {
                check_gateway(&subnet, gateway)?;
                gateway
            }
            // The first host address, as docker does (172.17.0.1).
            None => subnet
                .host(1)
                .expect("check_size leaves room for a gateway"),
        };

        // A fresh ID whose 12-digit prefix no other network has, so the
        // bridge names (and short IDs) never clash.
        let id = loop {
            let id = random_id()?;
            if !others
                .iter()
                .any(|n| n.id[..12.min(n.id.len())] == id[..12])
            {
                break id;
            }
        };
        let bridge = if name == DEFAULT {
            DEFAULT_BRIDGE.to_string()
        } else {
            format!("cb-{}", &id[..12])
        };
        assert!(
            bridge.len() <= MAX_INTERFACE_NAME,
            "bridge name {bridge} is too long"
        );

        let network = Network {
            name: name.to_string(),
            id,
            driver: "bridge".to_string(),
            bridge,
            subnet,
            gateway,
            internal,
            created: now_rfc3339(),
            endpoints: BTreeMap::new(),
        };
        explain::step(
            &format!(
                "recording network {name}: subnet {subnet}, gateway {gateway}, bridge {}",
                network.bridge
            ),
            Some(&format!(
                "cat > {}",
                explain::shell_quote(&self.path(name).to_string_lossy())
            )),
        );
        self.save(&network)?;
        Ok(network)
    }
}

/// docker's rule for network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A bridge network needs a gateway and at least one container: a /30
/// (four addresses, two of them for hosts) is the smallest that works.
fn check_size(subnet: &Cidr) -> Result<()> {
    if subnet.hosts() < 2 {
        return Err(Error::new(format!(
            "subnet {subnet} is too small: it needs room for a gateway and a container — use a /30 or larger"
        )));
    }
    Ok(())
}

/// A given gateway must be a host address of the subnet: the network
/// and broadcast addresses are not for hosts.
fn check_gateway(subnet: &Cidr, gateway: Ipv4Addr) -> Result<()> {
    if !subnet.contains(gateway) {
        return Err(Error::new(format!(
            "invalid gateway {gateway}: it is not in subnet {subnet} — give one inside it"
        )));
    }
    if gateway == subnet.network() || gateway == subnet.broadcast() {
        return Err(Error::new(format!(
            "invalid gateway {gateway}: it is the network or broadcast address of {subnet} — give a host address"
        )));
    }
    Ok(())
}

fn read(path: &Path) -> Result<Network> {
    let bytes = fs::read(path).context("reading", path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(format!(
            "{} is damaged ({e}) — remove it and create the network again",
            path.display()
        ))
    })
}

/// 32 random bytes as 64 hex digits, as docker's network IDs.
fn random_id() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading", urandom)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Now, as docker writes a network's `Created` (chapter 3's formatter).
fn now_rfc3339() -> String {
    ch03_run::logs::rfc3339_nanos(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh engine root, removed when dropped.
    struct TempRoot(PathBuf);

    impl TempRoot {
        fn new(label: &str) -> TempRoot {
            let dir = std::env::temp_dir()
                .join(format!("crabbox-networks-{label}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempRoot(dir)
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_network_is_made_once_with_172_17() {
        let root = TempRoot::new("default");
        let networks = Networks::open(&root.0).unwrap();
        let _lock = networks.lock().unwrap();
        let bridge = networks.ensure_default(&[]).unwrap();
        assert_eq!(bridge.name, "bridge");
        assert_eq!(bridge.bridge, DEFAULT_BRIDGE);
        assert_eq!(bridge.driver, "bridge");
        assert_eq!(bridge.subnet, cidr("172.17.0.0/16"));
        assert_eq!(bridge.gateway, ip("172.17.0.1"));
        assert_eq!(bridge.id.len(), 64);
        assert!(bridge.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(bridge.created.ends_with('Z') && bridge.created.contains('T'));
        assert!(root.0.join("networks/bridge.json").is_file());
        // The second time it is read back, not made again.
        assert_eq!(networks.ensure_default(&[]).unwrap(), bridge);
        assert_eq!(networks.get("bridge").unwrap(), Some(bridge));
    }

    #[test]
    fn the_default_network_avoids_the_hosts_ranges() {
        let root = TempRoot::new("default-taken");
        let networks = Networks::open(&root.0).unwrap();
        let host = vec![(
            cidr("172.16.0.0/15"),
            "route 172.16.0.0/15 dev vpn0".to_string(),
        )];
        let bridge = networks.ensure_default(&host).unwrap();
        assert_eq!(bridge.subnet, cidr("172.18.0.0/16"));
        assert_eq!(bridge.gateway, ip("172.18.0.1"));
    }

    #[test]
    fn create_picks_free_ranges_and_names_bridges() {
        let root = TempRoot::new("create");
        let networks = Networks::open(&root.0).unwrap();
        let host = vec![(
            cidr("172.18.0.0/16"),
            "route 172.18.0.0/16 dev eth1".to_string(),
        )];
        networks.ensure_default(&host).unwrap();
        let web = networks.create("web", None, None, false, &host).unwrap();
        assert_eq!(web.subnet, cidr("172.19.0.0/16"));
        assert_eq!(web.gateway, ip("172.19.0.1"));
        assert_eq!(web.bridge, format!("cb-{}", &web.id[..12]));
        assert_eq!(web.bridge.len(), 15);
        assert!(!web.internal);
        assert!(web.endpoints.is_empty());

        let db = networks
            .create(
                "db.internal",
                Some(cidr("10.5.0.0/24")),
                Some(ip("10.5.0.254")),
                true,
                &host,
            )
            .unwrap();
        assert_eq!(db.gateway, ip("10.5.0.254"));
        assert!(db.internal);

        let names: Vec<String> = networks
            .list()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["bridge", "db.internal", "web"]);
        assert_eq!(networks.get("web").unwrap(), Some(web));
        assert_eq!(networks.get("nope").unwrap(), None);
        assert_eq!(networks.get("../networks/web").unwrap(), None);
    }

    #[test]
    fn create_refuses_bad_names_and_duplicates() {
        let root = TempRoot::new("names");
        let networks = Networks::open(&root.0).unwrap();
        networks.create("a", None, None, false, &[]).unwrap();
        let err = |name: &str| {
            networks
                .create(name, None, None, false, &[])
                .unwrap_err()
                .message()
                .to_string()
        };
        assert_eq!(err("a"), "network with name a already exists");
        assert_eq!(err("bridge"), "network with name bridge already exists");
        assert!(err("host").starts_with("network name host is reserved"));
        assert!(err("none").starts_with("network name none is reserved"));
        for bad in ["", "-x", ".x", "_x", "a/b", "a b", "é"] {
            assert!(err(bad).starts_with("invalid network name"), "{bad:?}");
        }
        assert!(valid_name("x") && valid_name("My_net-1.2"));
    }

    #[test]
    fn create_checks_a_given_subnet_and_gateway() {
        let root = TempRoot::new("subnets");
        let networks = Networks::open(&root.0).unwrap();
        let host = vec![(cidr("10.0.0.0/8"), "route 10.0.0.0/8 dev eth0".to_string())];
        networks
            .create("one", Some(cidr("192.168.50.0/24")), None, false, &host)
            .unwrap();
        let err = |subnet: Option<&str>, gateway: Option<&str>| {
            networks
                .create("two", subnet.map(cidr), gateway.map(ip), false, &host)
                .unwrap_err()
                .message()
                .to_string()
        };
        assert_eq!(
            err(Some("10.1.0.0/16"), None),
            "subnet 10.1.0.0/16 overlaps route 10.0.0.0/8 dev eth0 of this host: choose another with --subnet"
        );
        assert_eq!(
            err(Some("192.168.0.0/16"), None),
            "subnet 192.168.0.0/16 overlaps network one (192.168.50.0/24): choose another with --subnet"
        );
        assert!(err(Some("172.20.0.0/31"), None).contains("too small"));
        assert!(err(Some("172.20.0.0/16"), Some("172.21.0.1")).contains("not in subnet"));
        assert!(err(Some("172.20.0.0/16"), Some("172.20.0.0")).contains("network or broadcast"));
        assert!(err(Some("172.20.0.0/16"), Some("172.20.255.255")).contains("network or broadcast"));
        assert!(err(None, Some("172.20.0.1")).starts_with("--gateway needs --subnet"));
        // Nothing half-made was left behind.
        assert_eq!(networks.list().unwrap().len(), 1);
        // A /30 is the smallest that works.
        let tiny = networks
            .create("tiny", Some(cidr("172.20.0.0/30")), None, false, &host)
            .unwrap();
        assert_eq!(tiny.gateway, ip("172.20.0.1"));
    }

    #[test]
    fn find_by_id_name_or_unique_prefix() {
        let root = TempRoot::new("find");
        let networks = Networks::open(&root.0).unwrap();
        let mut a = networks.create("a", None, None, false, &[]).unwrap();
        let mut b = networks.create("b", None, None, false, &[]).unwrap();
        // Fix the IDs so the prefixes are known.
        a.id = format!("abc1{}", "0".repeat(60));
        b.id = format!("abc2{}", "0".repeat(60));
        networks.save(&a).unwrap();
        networks.save(&b).unwrap();
        assert_eq!(networks.find("a").unwrap().name, "a");
        assert_eq!(networks.find(&b.id).unwrap().name, "b");
        assert_eq!(networks.find("abc1").unwrap().name, "a");
        assert!(networks
            .find("abc")
            .unwrap_err()
            .message()
            .contains("ambiguous"));
        assert_eq!(
            networks.find("zzz").unwrap_err().message(),
            "network zzz not found — see network ls"
        );
        assert!(networks.find("").is_err());
    }

    #[test]
    fn a_damaged_file_is_skipped_and_remove_forgets() {
        let root = TempRoot::new("damaged");
        let networks = Networks::open(&root.0).unwrap();
        networks.create("good", None, None, false, &[]).unwrap();
        fs::write(networks.dir().join("bad.json"), b"{ not json").unwrap();
        let names: Vec<String> = networks
            .list()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["good"]);
        assert!(networks
            .get("bad")
            .unwrap_err()
            .message()
            .contains("damaged"));

        networks.remove("good").unwrap();
        assert_eq!(networks.get("good").unwrap(), None);
        assert_eq!(
            networks.remove("good").unwrap_err().message(),
            "network good not found — see network ls"
        );
    }

    #[test]
    fn the_file_round_trips() {
        let root = TempRoot::new("json");
        let networks = Networks::open(&root.0).unwrap();
        let mut net = networks.create("n", None, None, false, &[]).unwrap();
        net.endpoints.insert(
            "c".repeat(64),
            Endpoint {
                container: "web".into(),
                ip: ip("172.17.0.2"),
                mac: "02:42:ac:11:00:02".into(),
                aliases: vec!["www".into()],
                interface: "eth0".into(),
                host_interface: "veth1234567".into(),
            },
        );
        networks.save(&net).unwrap();
        let text = fs::read_to_string(networks.dir().join("n.json")).unwrap();
        assert!(text.contains("\"subnet\": \"172.17.0.0/16\""), "{text}");
        assert_eq!(networks.get("n").unwrap(), Some(net));
    }
}
