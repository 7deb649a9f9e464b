//! # Chapter 06: bridge networking
//!
//! Until now a container had a network namespace with nothing in it but
//! `lo`. This chapter gives each container its own interface and IP
//! address on an internal network of the engine's, in an address range of
//! its own, and builds the bridge between the containers and the host:
//! a Linux bridge, one veth pair per container, routes, NAT.
//!
//! Reading order:
//!
//! 1. [`subnet`]: address ranges (CIDR), and choosing one the host does not use.
//! 2. [`network`]: a network's definition on disk (`ROOT/networks/NAME.json`).
//! 3. [`ipam`]: giving each container an address of its network, once.
//! 4. [`link`]: the bridge and the veth pairs.
//! 5. [`address`]: addresses, routes and sysctls, inside and outside.
//! 6. [`nat`]: iptables: the way out (MASQUERADE), isolation, forwarding.
//! 7. [`ports`]: publishing a container's port on the host (`-p`).
//! 8. [`names`]: `/etc/hosts`, so containers find each other by name.
//! 9. [`extension`]: all of it plugged into chapter 3's lifecycle.
//! 10. [`cli`]: the command line: `network …`, `port`, `--network`, `-p`.

pub mod address;
pub mod cli;
pub mod extension;
pub mod ipam;
pub mod link;
pub mod names;
pub mod nat;
pub mod network;
pub mod ports;
pub mod subnet;
