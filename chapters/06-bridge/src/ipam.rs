//! IP address management (IPAM): giving each container an address of its
//! network, once.
//!
//! A network's range is shared by everyone on it, so someone must keep
//! the book of who has which address: here, the network's own file, whose
//! `endpoints` map container IDs to addresses. Allocating is "find the
//! lowest address nobody has, write it down"; releasing is "cross it
//! out". Both are done on a [`Network`] read while holding
//! [`Networks::lock`](crate::network::Networks::lock), and saved before
//! the lock is let go, so two containers created at the same moment can
//! never be handed the same address.
//!
//! An address belongs to the **container**, not to its process. It is
//! given when the container is created and taken back when the container
//! is removed (`rm`), and a `stop` then `start` keeps it: the container
//! comes back on the same address, with the same MAC, so whatever other
//! containers wrote down about it (its `/etc/hosts` line) stays true.
//! (docker itself gives the address back when a container stops, which
//! is why a restarted docker container may come back on another one.)
//!
//! The addresses we never hand out: the network address (the range's
//! first, naming the network itself), the broadcast address (its last,
//! meaning "everyone"), and the gateway (the bridge's own address, the
//! containers' way out).

use crate::network::{Endpoint, Network};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use std::collections::HashSet;
use std::net::Ipv4Addr;

// ANCHOR: allocate
/// Gives `container_id` an address on `network` and records it there:
/// `requested` (`--ip`) if it is a free host address of the subnet, else
/// the lowest free one, as docker hands them out in order (the gateway
/// is `.1`, so the first container gets `.2`). The caller holds the
/// networks lock and saves `network` afterwards.
pub fn allocate(
    network: &mut Network,
    container_id: &str,
    container_name: &str,
    requested: Option<Ipv4Addr>,
    aliases: Vec<String>,
    interface: &str,
    host_interface: &str,
) -> Result<Endpoint> {
    if network.endpoints.contains_key(container_id) {
        return Err(Error::new(format!(
            "container {container_name} is already attached to network {}",
            network.name
        )));
    }
    // An alias is written into the /etc/hosts of every peer: a blank or a
    // newline in it would add lines of its own there (another name for
    // another address). Only a plain name is an alias.
    if let Some(bad) = aliases.iter().find(|a| !crate::network::valid_name(a)) {
        return Err(Error::new(format!(
            "invalid network alias {bad:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    let in_use: HashSet<Ipv4Addr> = network.endpoints.values().map(|e| e.ip).collect();
    let ip = match requested {
        Some(ip) => {
            check_requested(network, ip)?;
            if in_use.contains(&ip) {
                return Err(Error::new(format!(
                    "address {ip} is already in use on network {}",
                    network.name
                )));
            }
            ip
        }
        None => lowest_free(network, &in_use)?,
    };
    let endpoint = Endpoint {
        container: container_name.to_string(),
        ip,
        mac: mac_for(ip),
        aliases,
        interface: interface.to_string(),
        host_interface: host_interface.to_string(),
    };
    explain::step(
        &format!(
            "giving {container_name} the address {ip}/{} (MAC {}) on network {}",
            network.subnet.prefix, endpoint.mac, network.name
        ),
        None,
    );
    network
        .endpoints
        .insert(container_id.to_string(), endpoint.clone());
    Ok(endpoint)
}

/// The first host address of the subnet that is neither the gateway nor
/// anyone's. The loop stops at the first free one, so it is short even
/// on a /8: at most one step per container, plus the gateway.
fn lowest_free(network: &Network, in_use: &HashSet<Ipv4Addr>) -> Result<Ipv4Addr> {
    let subnet = network.subnet;
    (1..=subnet.hosts())
        .filter_map(|n| subnet.host(n))
        .find(|ip| *ip != network.gateway && !in_use.contains(ip))
        .ok_or_else(|| {
            Error::new(format!(
                "no free address left on network {} ({subnet}): remove a container from it, or use a network with a larger --subnet",
                network.name
            ))
        })
}
// ANCHOR_END: allocate

/// `--ip` must name a host address of the subnet that is not reserved.
fn check_requested(network: &Network, ip: Ipv4Addr) -> Result<()> {
    let subnet = network.subnet;
    if !subnet.contains(ip) {
        return Err(Error::new(format!(
            "invalid IP address {ip}: not in network {}'s subnet {subnet}",
            network.name
        )));
    }
    let reserved = if ip == subnet.network() {
        Some("the network address")
    } else if ip == subnet.broadcast() {
        Some("the broadcast address")
    } else if ip == network.gateway {
        Some("the gateway")
    } else {
        None
    };
    if let Some(what) = reserved {
        return Err(Error::new(format!(
            "invalid IP address {ip}: it is {what} of network {} — choose another",
            network.name
        )));
    }
    Ok(())
}

// ANCHOR: mac_for
/// The MAC address docker derives from an IPv4 address: `02:42:` then
/// the address's four bytes (`172.17.0.2` → `02:42:ac:11:00:02`). The
/// `02` marks it locally administered (no vendor's), and since no two
/// endpoints of a network share an address, none share a MAC either.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}
// ANCHOR_END: mac_for

/// Takes back the address of `container_id` (at `rm`, or `network
/// disconnect`), returning what it had. The caller holds the networks
/// lock and saves `network` afterwards.
pub fn release(network: &mut Network, container_id: &str) -> Option<Endpoint> {
    let endpoint = network.endpoints.remove(container_id)?;
    explain::step(
        &format!(
            "taking back {} from {} on network {}",
            endpoint.ip, endpoint.container, network.name
        ),
        None,
    );
    Some(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subnet::Cidr;
    use std::collections::BTreeMap;

    fn network(subnet: &str, gateway: &str) -> Network {
        Network {
            name: "web".into(),
            id: "f".repeat(64),
            driver: "bridge".into(),
            bridge: "cb-ffffffffffff".into(),
            subnet: Cidr::parse(subnet).unwrap(),
            gateway: gateway.parse().unwrap(),
            internal: false,
            created: "2026-01-01T00:00:00Z".into(),
            endpoints: BTreeMap::new(),
        }
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn attach(net: &mut Network, id: &str, requested: Option<&str>) -> Result<Endpoint> {
        allocate(
            net,
            id,
            &format!("name-{id}"),
            requested.map(ip),
            vec![],
            "eth0",
            &format!("veth{id}"),
        )
    }

    #[test]
    fn hands_out_addresses_in_order_skipping_the_gateway() {
        let mut net = network("172.18.0.0/16", "172.18.0.1");
        let first = attach(&mut net, "a", None).unwrap();
        assert_eq!(first.ip, ip("172.18.0.2"));
        assert_eq!(first.mac, "02:42:ac:12:00:02");
        assert_eq!(first.container, "name-a");
        assert_eq!(first.interface, "eth0");
        assert_eq!(first.host_interface, "vetha");
        assert_eq!(attach(&mut net, "b", None).unwrap().ip, ip("172.18.0.3"));
        assert_eq!(net.endpoints["a"], first);

        // A gateway in the middle is skipped too.
        let mut net = network("10.0.0.0/24", "10.0.0.3");
        let ips: Vec<Ipv4Addr> = ["a", "b", "c"]
            .iter()
            .map(|id| attach(&mut net, id, None).unwrap().ip)
            .collect();
        assert_eq!(ips, [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.4")]);
    }

    #[test]
    fn a_container_is_attached_once() {
        let mut net = network("172.18.0.0/16", "172.18.0.1");
        attach(&mut net, "a", None).unwrap();
        assert_eq!(
            attach(&mut net, "a", None).unwrap_err().message(),
            "container name-a is already attached to network web"
        );
        assert_eq!(net.endpoints.len(), 1);
    }

    #[test]
    fn requested_addresses_follow_the_rules() {
        let mut net = network("172.18.0.0/16", "172.18.0.1");
        assert_eq!(
            attach(&mut net, "a", Some("172.18.5.9")).unwrap().ip,
            ip("172.18.5.9")
        );
        assert_eq!(
            attach(&mut net, "b", Some("172.18.5.9"))
                .unwrap_err()
                .message(),
            "address 172.18.5.9 is already in use on network web"
        );
        assert_eq!(
            attach(&mut net, "b", Some("10.0.0.2"))
                .unwrap_err()
                .message(),
            "invalid IP address 10.0.0.2: not in network web's subnet 172.18.0.0/16"
        );
        for reserved in ["172.18.0.0", "172.18.255.255", "172.18.0.1"] {
            let err = attach(&mut net, "b", Some(reserved)).unwrap_err();
            assert!(err
                .message()
                .starts_with(&format!("invalid IP address {reserved}: it is the")));
        }
        // The automatic ones go around the requested one.
        assert_eq!(attach(&mut net, "b", None).unwrap().ip, ip("172.18.0.2"));
    }

    #[test]
    fn a_slash_30_holds_one_container() {
        let mut net = network("10.9.0.4/30", "10.9.0.5");
        assert_eq!(attach(&mut net, "a", None).unwrap().ip, ip("10.9.0.6"));
        let err = attach(&mut net, "b", None).unwrap_err();
        assert!(
            err.message()
                .starts_with("no free address left on network web (10.9.0.4/30)"),
            "{}",
            err.message()
        );
        assert!(!net.endpoints.contains_key("b"));
    }

    #[test]
    fn released_addresses_are_reused() {
        let mut net = network("172.18.0.0/16", "172.18.0.1");
        for id in ["a", "b", "c"] {
            attach(&mut net, id, None).unwrap();
        }
        let gone = release(&mut net, "b").unwrap();
        assert_eq!(gone.ip, ip("172.18.0.3"));
        assert_eq!(release(&mut net, "b"), None);
        // The lowest free address is b's old one.
        assert_eq!(attach(&mut net, "d", None).unwrap().ip, ip("172.18.0.3"));
        assert_eq!(attach(&mut net, "e", None).unwrap().ip, ip("172.18.0.5"));
    }

    #[test]
    fn macs_come_from_the_address() {
        assert_eq!(mac_for(ip("172.17.0.2")), "02:42:ac:11:00:02");
        assert_eq!(mac_for(ip("192.168.255.254")), "02:42:c0:a8:ff:fe");
    }

    #[test]
    fn an_alias_cannot_write_lines_into_the_peers_hosts_files() {
        let mut network = network("172.30.0.0/16", "172.30.0.1");
        for bad in ["db\n10.0.0.1 bank", "two words", "", "-x"] {
            let err = allocate(
                &mut network,
                "c1",
                "web",
                None,
                vec![bad.into()],
                "eth0",
                "veth1",
            )
            .unwrap_err();
            assert!(err.to_string().contains("invalid network alias"), "{err}");
        }
        assert!(network.endpoints.is_empty());
        allocate(
            &mut network,
            "c1",
            "web",
            None,
            vec!["postgres".into()],
            "eth0",
            "veth1",
        )
        .unwrap();
    }
}
