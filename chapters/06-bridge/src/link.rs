//! The bridge and the veth pairs: the cables of a bridge network.
//!
//! ```text
//!      host                                  container (its own network namespace)
//!  ┌───────────────────────────────┐        ┌──────────────────────────┐
//!  │ crabbox0  172.17.0.1/16       │        │ eth0  172.17.0.2/16      │
//!  │ (a Linux bridge: a switch) ───┼─ veth ─┼─ default via 172.17.0.1  │
//!  │   └── vethXXXXXXX (a port)    │  pair  │                          │
//!  └───────────────────────────────┘        └──────────────────────────┘
//! ```
//!
//! * A **bridge** is a virtual switch inside the kernel. Interfaces
//!   plugged into it ("ports") exchange Ethernet frames as if on one wire.
//!   Giving the bridge itself an address (the network's gateway) makes the
//!   host one more machine on that wire, and the containers' way out.
//! * A **veth pair** is a virtual cable: two interfaces, and what goes in
//!   one comes out of the other. One end stays on the host, plugged into
//!   the bridge; the other end is created directly inside the container's
//!   network namespace (`… peer name eth0 netns PID`), so the name `eth0`
//!   never has to exist on the host, where it may well be taken.
//! * When the container's namespace goes away (its last process exited),
//!   the kernel deletes its end, and deleting one end deletes the pair:
//!   there is usually nothing to clean up. [`detach`] is for the cases
//!   where the namespace lives on (`network disconnect` of a running
//!   container, a failed start).
//! * **hairpin** on a bridge port lets a frame go back out of the port it
//!   came in by. A bridge normally never does that; but a container that
//!   connects to its *own* published port (`host:8080` → DNAT → itself)
//!   sends packets that must come back to it through the same port.
//!
//! Everything is done by running `ip` (iproute2), several commands per
//! process with `ip -batch -` ([`crate::address::run_ip_batch`]): what
//! `--explain` shows is exactly what you could type.

use crate::address::{check_interface_name, in_namespace_of, run_ip_batch};
use crate::network::{Endpoint, Network};
use ch01_images::error::{Error, Result};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// Does an interface called `name` exist in the calling thread's network
/// namespace? Asked of the kernel (`if_nametoindex`, as `ip link show`
/// does), not of `/sys/class/net`, which shows the namespace of whoever
/// mounted `/sys`.
pub fn exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

// ANCHOR: ensure_bridge
/// Creates the network's bridge with the gateway address and switches it
/// on, unless it exists already.
pub fn ensure_bridge(network: &Network) -> Result<()> {
    let name = &network.bridge;
    check_interface_name(name)?;
    if exists(name) {
        return Ok(());
    }
    let address = format!("{}/{}", network.gateway, network.subnet.prefix);
    let commands = [
        (
            format!(
                "create the bridge {name}: a virtual switch for the network {}",
                network.name
            ),
            format!("link add {name} type bridge"),
        ),
        (
            format!("give it the gateway address {address}: the host's place on that network"),
            format!("addr add {address} brd + dev {name}"),
        ),
        (format!("switch {name} on"), format!("link set {name} up")),
    ];
    if let Err(e) = run_ip_batch(&commands, "") {
        if e.message().starts_with(&format!("ip {}:", commands[0].1)) && exists(name) {
            // Another engine created it a moment ago.
            return Ok(());
        }
        // Do not leave a half-made bridge behind: the next try would find
        // it "there" and never give it its address.
        if exists(name) {
            let _ = run_ip_batch(
                &[(format!("undo: delete {name}"), format!("link del {name}"))],
                "",
            );
        }
        return Err(e);
    }
    Ok(())
}
// ANCHOR_END: ensure_bridge

/// Deletes the bridge `name` (its ports are unplugged, not deleted).
/// No error if it is gone already.
pub fn remove_bridge(name: &str) -> Result<()> {
    delete_link(name, &format!("delete the bridge {name}"))
}

/// Deletes interface `name` in the calling thread's namespace, if there.
fn delete_link(name: &str, why: &str) -> Result<()> {
    check_interface_name(name)?;
    if !exists(name) {
        return Ok(());
    }
    match run_ip_batch(&[(why.to_string(), format!("link del {name}"))], "") {
        Err(_) if !exists(name) => Ok(()),
        other => other,
    }
}

/// The host end of a container's veth pair on a network: `veth` and 7 hex
/// digits of a hash of both IDs. The kernel allows 15 characters; this
/// name is 11, the same for one container on one network every time (so
/// it can be found again from what is on disk), and different for
/// another container or another network.
pub fn host_interface_name(container_id: &str, network_id: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}/{network_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("veth{}", &hex[..7])
}

// ANCHOR: attach
/// Connects the container whose process is `pid` to `network`: a veth
/// pair from the bridge to `endpoint.interface` inside the container, with
/// the endpoint's MAC and IP address, and (if `default_route`, and the
/// network is not internal) the default route through the gateway.
pub fn attach(pid: Pid, network: &Network, endpoint: &Endpoint, default_route: bool) -> Result<()> {
    let host = &endpoint.host_interface;
    let inside = &endpoint.interface;
    let bridge = &network.bridge;
    for name in [host, inside, bridge] {
        check_interface_name(name)?;
    }
    check_mac(&endpoint.mac)?;
    let outside = [
        (
            format!("create a veth pair: {host} stays here, {inside} is born inside the container (process {pid})"),
            format!("link add {host} type veth peer name {inside} netns {pid}"),
        ),
        (
            format!("plug {host} into the bridge {bridge}"),
            format!("link set {host} master {bridge}"),
        ),
        (
            format!("let frames go back out of {host} (hairpin): a container can reach its own published port"),
            format!("link set {host} type bridge_slave hairpin on"),
        ),
        (format!("switch {host} on"), format!("link set {host} up")),
    ];
    let address = format!("{}/{}", endpoint.ip, network.subnet.prefix);
    let mut within = vec![
        (
            format!("give {inside} its MAC address"),
            format!("link set {inside} address {}", endpoint.mac),
        ),
        (
            format!("give {inside} its IP address {address}"),
            format!("addr add {address} brd + dev {inside}"),
        ),
        (
            format!("switch {inside} on"),
            format!("link set {inside} up"),
        ),
    ];
    if default_route && !network.internal {
        within.push((
            format!(
                "send everything else to the gateway {}: the way out",
                network.gateway
            ),
            format!("route add default via {} dev {inside}", network.gateway),
        ));
    }
    let result = run_ip_batch(&outside, "").and_then(|()| {
        in_namespace_of(pid, || {
            run_ip_batch(&within, &format!("nsenter --net=/proc/{pid}/ns/net "))
        })
    });
    if result.is_err() {
        // Half a cable is no use: deleting the host end deletes both.
        let _ = detach(host);
    }
    result
}
// ANCHOR_END: attach

/// Deletes the host end of a veth pair (and so the pair), if it is still
/// there. Usually it is not: the pair dies with the container's namespace.
pub fn detach(host_interface: &str) -> Result<()> {
    delete_link(
        host_interface,
        &format!("delete the veth pair {host_interface} (both ends)"),
    )
}

/// Deletes `interface` inside the network namespace of process `pid`
/// (`network disconnect` of a running container), if it is there.
pub fn detach_inside(pid: Pid, interface: &str) -> Result<()> {
    check_interface_name(interface)?;
    in_namespace_of(pid, || {
        if !exists(interface) {
            return Ok(());
        }
        run_ip_batch(
            &[(
                format!("delete {interface} inside the container (and with it the host end)"),
                format!("link del {interface}"),
            )],
            &format!("nsenter --net=/proc/{pid}/ns/net "),
        )
    })
}

/// A MAC address as `ip` takes it: six pairs of hex digits and colons.
fn check_mac(mac: &str) -> Result<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(Error::new(format!(
            "invalid MAC address {mac:?}: write six hex pairs, 02:42:ac:11:00:02"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::tests::{in_new_netns, root_or_skip, test_network, Sleeper};
    use std::net::Ipv4Addr;
    use std::process::Command;

    fn endpoint(network: &Network, host: u8, container_id: &str) -> Endpoint {
        let [a, b, c, _] = network.subnet.addr.octets();
        Endpoint {
            container: format!("c{host}"),
            ip: Ipv4Addr::new(a, b, c, host),
            mac: format!("02:42:{a:02x}:{b:02x}:{c:02x}:{host:02x}"),
            aliases: vec![],
            interface: "eth0".into(),
            host_interface: host_interface_name(container_id, &network.id),
        }
    }

    fn ip(args: &[&str]) -> String {
        let output = Command::new("ip").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn host_interface_names_are_short_stable_and_distinct() {
        let a = host_interface_name("c1", "n1");
        assert_eq!(a, host_interface_name("c1", "n1"));
        assert!(a.starts_with("veth") && a.len() == 11, "{a}");
        assert_ne!(a, host_interface_name("c2", "n1"));
        assert_ne!(a, host_interface_name("c1", "n2"));
    }

    #[test]
    fn ensure_bridge_is_idempotent_and_gives_the_gateway_address() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let net = test_network("cbtest1", 99, 1, false);
            assert!(!exists("cbtest1"));
            ensure_bridge(&net).unwrap();
            ensure_bridge(&net).unwrap();
            assert!(exists("cbtest1"));
            let addresses = ip(&["-o", "-4", "addr", "show", "dev", "cbtest1"]);
            assert_eq!(addresses.lines().count(), 1, "{addresses}");
            assert!(
                addresses.contains("inet 10.99.1.1/24 brd 10.99.1.255"),
                "{addresses}"
            );
            assert!(ip(&["-o", "link", "show", "cbtest1"]).contains(",UP"));
            remove_bridge("cbtest1").unwrap();
            assert!(!exists("cbtest1"));
            remove_bridge("cbtest1").unwrap();
        });
    }

    #[test]
    fn attach_configures_the_container_side_and_detach_removes_the_pair() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let net = test_network("cbtest2", 99, 2, false);
            ensure_bridge(&net).unwrap();
            let container = Sleeper::start();
            let ep = endpoint(&net, 2, "container-a");
            attach(container.pid(), &net, &ep, true).unwrap();

            let host_end = ip(&["-d", "-o", "link", "show", &ep.host_interface]);
            assert!(host_end.contains("master cbtest2"), "{host_end}");
            assert!(host_end.contains("hairpin on"), "{host_end}");
            assert!(
                host_end.contains("state UP") || host_end.contains(",UP"),
                "{host_end}"
            );
            assert!(!exists("eth0"), "eth0 must not appear on the host side");

            let link = container.run(&["ip", "-o", "link", "show", "eth0"]);
            assert!(link.contains(&format!("link/ether {}", ep.mac)), "{link}");
            let addresses = container.run(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
            assert!(
                addresses.contains("inet 10.99.2.2/24 brd 10.99.2.255"),
                "{addresses}"
            );
            let routes = container.run(&["ip", "route"]);
            assert!(
                routes.contains("default via 10.99.2.1 dev eth0"),
                "{routes}"
            );

            detach(&ep.host_interface).unwrap();
            assert!(!exists(&ep.host_interface));
            let links = container.run(&["ip", "-o", "link"]);
            assert!(!links.contains("eth0"), "{links}");
            detach(&ep.host_interface).unwrap();
        });
    }

    #[test]
    fn internal_networks_get_no_default_route_and_detach_inside_works() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let net = test_network("cbtest3", 99, 3, true);
            ensure_bridge(&net).unwrap();
            let container = Sleeper::start();
            let ep = endpoint(&net, 5, "container-b");
            attach(container.pid(), &net, &ep, true).unwrap();
            let routes = container.run(&["ip", "route"]);
            assert!(!routes.contains("default"), "{routes}");
            assert!(routes.contains("10.99.3.0/24 dev eth0"), "{routes}");

            detach_inside(container.pid(), "eth0").unwrap();
            assert!(!container.run(&["ip", "-o", "link"]).contains("eth0"));
            assert!(!exists(&ep.host_interface), "the host end goes with it");
            detach_inside(container.pid(), "eth0").unwrap();
        });
    }

    #[test]
    fn a_failed_attach_leaves_no_half_cable() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let net = test_network("cbtest4", 99, 4, false);
            ensure_bridge(&net).unwrap();
            let container = Sleeper::start();
            let first = endpoint(&net, 2, "container-c");
            attach(container.pid(), &net, &first, true).unwrap();
            // A second interface that also wants the default route: the
            // pair is made, then `route add` fails inside (there is one).
            let second = Endpoint {
                interface: "eth1".into(),
                host_interface: host_interface_name("container-d", &net.id),
                ..endpoint(&net, 3, "container-d")
            };
            let err = attach(container.pid(), &net, &second, true).unwrap_err();
            let message = err.message();
            assert!(
                message.starts_with(&format!(
                    "nsenter --net=/proc/{}/ns/net ip route add default via 10.99.4.1 dev eth1: ",
                    container.pid()
                )),
                "{message}"
            );
            assert!(!exists(&second.host_interface));
            assert!(!container.run(&["ip", "-o", "link"]).contains("eth1"));
        });
    }

    #[test]
    fn two_containers_on_one_bridge_ping_each_other_even_with_forward_drop() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let net = test_network("cbtest5", 99, 5, false);
            ensure_bridge(&net).unwrap();
            let iptables = crate::nat::Iptables::detect().unwrap();
            iptables.ensure_chains().unwrap();
            iptables.add_network(&net).unwrap();
            let policy = Command::new(iptables.binary)
                .args(["-w", "-P", "FORWARD", "DROP"])
                .status()
                .unwrap();
            assert!(policy.success());

            let a = Sleeper::start();
            let b = Sleeper::start();
            let ea = endpoint(&net, 2, "container-e");
            let eb = endpoint(&net, 3, "container-f");
            attach(a.pid(), &net, &ea, true).unwrap();
            attach(b.pid(), &net, &eb, true).unwrap();
            a.run(&["busybox", "ping", "-c1", "-W1", "10.99.5.3"]);
            b.run(&["busybox", "ping", "-c1", "-W1", "10.99.5.2"]);
            // And the host reaches them through the gateway address.
            a.run(&["busybox", "ping", "-c1", "-W1", "10.99.5.1"]);
        });
    }
}
