//! Names: how a container finds another by its name.
//!
//! On a network a user made (`network create`), containers reach each
//! other by container name and by alias (`--network-alias`); on the
//! default `bridge`, only by address, as in docker. Docker answers those
//! names with a DNS server inside the engine (at 127.0.0.11 in every
//! container). This engine writes them into each container's
//! `/etc/hosts`, which the C library reads before asking any DNS server:
//!
//! ```text
//! 127.0.0.1     localhost
//! ::1           localhost ip6-localhost ip6-loopback
//! …
//! 172.18.0.2    web                       ← itself: IP hostname
//! 172.18.0.3    db postgres               ← a peer: IP name aliases…
//! ```
//!
//! When a container joins or leaves a network, the `/etc/hosts` of every
//! other container on it is written again, **in place** (chapter 3's
//! `etc::rewrite_etc_file`): the file is bind-mounted into a running
//! container, and a bind mount pins the file's inode, so a new file
//! renamed over it would never be seen inside.

use crate::network::{Network, DEFAULT};
use ch01_images::error::Result;
use ch03_run::record;
use std::collections::BTreeSet;
use std::path::Path;

/// The lines every `/etc/hosts` starts with.
const LOCAL: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                     fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
                     ff02::2\tip6-allrouters\n";

// ANCHOR: hosts
/// The `/etc/hosts` of container `id` (whose hostname is `hostname`)
/// given every network: its own addresses, then on each user-defined
/// network it is on, every other container there by name and aliases.
pub fn hosts_file(id: &str, hostname: &str, networks: &[Network]) -> String {
    let mut text = String::from(LOCAL);
    let mine: Vec<&Network> = networks
        .iter()
        .filter(|n| n.endpoints.contains_key(id))
        .collect();
    for network in &mine {
        text.push_str(&format!("{}\t{hostname}\n", network.endpoints[id].ip));
    }
    let mut written = BTreeSet::new();
    for network in mine.iter().filter(|n| n.name != DEFAULT) {
        for (peer, endpoint) in &network.endpoints {
            if peer == id {
                continue;
            }
            let mut names = vec![endpoint.container.clone()];
            names.extend(endpoint.aliases.iter().cloned());
            let line = format!("{}\t{}\n", endpoint.ip, names.join(" "));
            if written.insert(line.clone()) {
                text.push_str(&line);
            }
        }
    }
    text
}
// ANCHOR_END: hosts

// ANCHOR: refresh
/// Writes again the `/etc/hosts` of every container attached to
/// `network` (in place), except `except`. The caller holds the networks'
/// lock, so two refreshes never interleave.
pub fn refresh(root: &Path, network: &Network, all: &[Network], except: &str) -> Result<()> {
    for id in network.endpoints.keys().filter(|id| *id != except) {
        let dir = record::containers_dir(root).join(id);
        let Some(config) = record::read_config(&dir) else {
            continue; // being removed right now
        };
        if !dir.join("hosts").is_file() {
            continue;
        }
        let content = hosts_file(id, &config.spec.hostname, all);
        ch03_run::etc::rewrite_etc_file(&dir, "hosts", &content)?;
    }
    Ok(())
}
// ANCHOR_END: refresh

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Endpoint;
    use std::collections::BTreeMap;

    fn network(name: &str, members: &[(&str, &str, &str, &[&str])]) -> Network {
        let endpoints: BTreeMap<String, Endpoint> = members
            .iter()
            .map(|(id, container, ip, aliases)| {
                (
                    id.to_string(),
                    Endpoint {
                        container: container.to_string(),
                        ip: ip.parse().unwrap(),
                        mac: String::new(),
                        aliases: aliases.iter().map(|a| a.to_string()).collect(),
                        interface: "eth0".into(),
                        host_interface: String::new(),
                    },
                )
            })
            .collect();
        Network {
            name: name.into(),
            id: "0".repeat(64),
            driver: "bridge".into(),
            bridge: "cb-x".into(),
            subnet: "172.18.0.0/16".to_string().try_into().unwrap(),
            gateway: "172.18.0.1".parse().unwrap(),
            internal: false,
            created: String::new(),
            endpoints,
        }
    }

    #[test]
    fn peers_by_name_on_a_user_network_only() {
        let user = network(
            "app",
            &[
                ("a", "web", "172.18.0.2", &[]),
                ("b", "db", "172.18.0.3", &["postgres"]),
            ],
        );
        let default = network(
            DEFAULT,
            &[
                ("a", "web", "172.17.0.2", &[]),
                ("c", "other", "172.17.0.3", &[]),
            ],
        );
        let hosts = hosts_file("a", "web-host", &[user, default]);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("172.18.0.2\tweb-host\n"));
        assert!(hosts.contains("172.17.0.2\tweb-host\n"));
        assert!(hosts.contains("172.18.0.3\tdb postgres\n"));
        assert!(!hosts.contains("other"), "{hosts}");
    }
}
