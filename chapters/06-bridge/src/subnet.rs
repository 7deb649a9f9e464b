//! Address ranges: CIDR blocks, docker's default pools, and choosing a
//! range the host does not use.
//!
//! An IPv4 address is a 32-bit number. A CIDR block such as
//! `172.17.0.0/16` says "the first 16 bits are the network, the other 16
//! number the hosts on it": 65 536 addresses, from `172.17.0.0` (the
//! network address, naming the block itself) to `172.17.255.255` (the
//! broadcast address). Once parsed, everything is arithmetic on that
//! number and a mask of `prefix` one-bits.
//!
//! Each network of ours needs a range of its own, and that range must not
//! be one the host already reaches some other way: if a container network
//! took `10.0.0.0/8` on a machine whose LAN is `10.1.0.0/16`, the kernel
//! would send the LAN's traffic into the bridge and the machine would
//! lose its network. So, as docker does, we read the host's routes and
//! addresses ([`host_ranges`]) and take the first of a fixed list of
//! private ranges ([`default_pools`]) that overlaps none of them
//! ([`choose`]); a range the user gives with `--subnet` is checked the
//! same way ([`check_free`]).

use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

/// An IPv4 address range, `172.17.0.0/16`: the first `prefix` bits name
/// the network, the rest number its hosts. Stored as its text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Reads `A.B.C.D/N`. The address must be the network's own (its host
    /// bits zero), as docker insists: `172.17.0.1/16` is refused, because
    /// whoever wrote it may have meant a different range.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let malformed =
            || format!("invalid subnet {text}: write it as A.B.C.D/N, e.g. 172.18.0.0/16");
        let (addr, prefix) = text.split_once('/').ok_or_else(malformed)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| malformed())?;
        // Digits only: `u8::from_str` would also take "+16".
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
        if prefix > 32 {
            return Err(format!(
                "invalid subnet {text}: the prefix length is at most 32"
            ));
        }
        let cidr = Cidr::of(addr, prefix);
        if cidr.addr != addr {
            return Err(format!("invalid subnet {text}: it should be {cidr}"));
        }
        Ok(cidr)
    }

    // ANCHOR: cidr_math
    /// The block of `prefix` bits that holds `addr`: `of(192.168.1.5, 24)`
    /// is `192.168.1.0/24`, the range an interface address belongs to.
    pub fn of(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        let mask = mask_bits(prefix);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    /// The netmask: `prefix` one-bits then zeros (`/16` is `255.255.0.0`).
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The first address, which names the network itself.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & mask_bits(self.prefix))
    }

    /// The last address: every host bit set.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask_bits(self.prefix))
    }

    /// Whether `ip` is in this range: its network bits are ours.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_bits(self.prefix) == u32::from(self.network())
    }

    /// Whether the two ranges share an address. CIDR blocks nest or are
    /// apart, never half-overlap: they overlap exactly when one holds the
    /// other's first address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
    // ANCHOR_END: cidr_math

    /// How many addresses can be given to hosts: all but the network and
    /// broadcast addresses (none for a /31 or /32, which a bridge network
    /// cannot use anyway).
    pub fn hosts(&self) -> u32 {
        let size = 1u64 << (32 - u32::from(self.prefix.min(32)));
        size.saturating_sub(2) as u32
    }

    /// The `n`-th host address: `host(1)` is the first one after the
    /// network address (`172.17.0.1`), `host(hosts())` the last one
    /// before the broadcast address.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        if n == 0 || n > self.hosts() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network()) + n))
    }
}

/// `prefix` one-bits from the left. (A shift by 32 would overflow, so
/// `/0`, the mask of nothing, is spelled out.)
fn mask_bits(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> String {
        cidr.to_string()
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(text: String) -> Result<Cidr, String> {
        Cidr::parse(&text)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        Cidr::parse(text)
    }
}

// ANCHOR: default_pools
/// docker's default address pools, in the order it tries them: the
/// private ranges `172.17.0.0/16` … `172.31.0.0/16` (the default network
/// gets the first), then `192.168.0.0/16` cut into sixteen /20s (4094
/// containers each), used once the 172s run out.
pub fn default_pools() -> Vec<Cidr> {
    let mut pools = Vec::new();
    for second in 17..=31 {
        pools.push(Cidr {
            addr: Ipv4Addr::new(172, second, 0, 0),
            prefix: 16,
        });
    }
    for n in 0..16 {
        pools.push(Cidr {
            // A /20 spans 16 values of the third byte.
            addr: Ipv4Addr::new(192, 168, n * 16, 0),
            prefix: 20,
        });
    }
    pools
}

/// The first default pool that overlaps nothing in `taken` (the host's
/// ranges and our other networks, each with a description).
pub fn choose(taken: &[(Cidr, String)]) -> Result<Cidr> {
    default_pools()
        .into_iter()
        .find(|pool| taken.iter().all(|(used, _)| !pool.overlaps(used)))
        .ok_or_else(|| {
            Error::new("no free address range left in the default pools: give one with --subnet")
        })
}
// ANCHOR_END: default_pools

/// Refuses a range the user asked for when it overlaps one in `taken`,
/// naming the first conflict so the user knows what is in the way.
pub fn check_free(wanted: &Cidr, taken: &[(Cidr, String)]) -> Result<()> {
    match taken.iter().find(|(used, _)| wanted.overlaps(used)) {
        Some((_, what)) => Err(Error::new(format!(
            "subnet {wanted} overlaps {what} of this host: choose another with --subnet"
        ))),
        None => Ok(()),
    }
}

// ANCHOR: host_ranges
/// Every IPv4 range the current network namespace already uses: the
/// destinations of the main routing table (`ip -4 route`) and the ranges
/// of the interfaces' addresses (`ip -4 addr`), each described the way
/// those commands print it (`route 10.0.0.0/8 via 192.168.1.1 dev eth0`,
/// `address 192.168.1.5/24 on wlan0`). The default route is left out:
/// `0.0.0.0/0` overlaps everything, yet it only says where traffic goes
/// when no better route exists, and ours will be better.
pub fn host_ranges() -> Result<Vec<(Cidr, String)>> {
    explain::step(
        "reading this host's routes and addresses, to pick a range nobody uses",
        Some("ip -4 route; ip -4 addr"),
    );
    // /proc/net is the reading process's own network namespace: run
    // inside `unshare -n`, this sees that namespace's routes only.
    let path = Path::new("/proc/net/route");
    let text = std::fs::read_to_string(path).context("reading", path)?;
    let mut ranges = parse_proc_route(&text);

    let addresses = nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::new(format!("listing this host's addresses: {e}")))?;
    for interface in addresses {
        let ipv4 = |a: Option<nix::sys::socket::SockaddrStorage>| {
            a.and_then(|a| a.as_sockaddr_in().map(|s| s.ip()))
        };
        let Some(addr) = ipv4(interface.address) else {
            continue; // IPv6, or a link without an address
        };
        // A netmask's length is its count of one-bits.
        let prefix = ipv4(interface.netmask).map_or(32, |m| u32::from(m).count_ones() as u8);
        ranges.push((
            Cidr::of(addr, prefix),
            format!("address {addr}/{prefix} on {}", interface.interface_name),
        ));
    }
    Ok(ranges)
}
// ANCHOR_END: host_ranges

/// The routes in `/proc/net/route`, the kernel's table form of the main
/// routing table: one line per route, addresses as 8 hex digits holding
/// the address's four bytes in memory order, so `0100A8C0` is
/// `192.168.0.1` on a little-endian machine.
fn parse_proc_route(text: &str) -> Vec<(Cidr, String)> {
    const RTF_GATEWAY: u32 = 0x2;
    const RTF_REJECT: u32 = 0x200;
    let hex = |field: &str| u32::from_str_radix(field, 16).ok();
    let ip = |bits: u32| Ipv4Addr::from(bits.to_ne_bytes());
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            continue;
        }
        let (Some(dest), Some(gateway), Some(flags), Some(mask)) = (
            hex(fields[1]),
            hex(fields[2]),
            hex(fields[3]),
            hex(fields[7]),
        ) else {
            continue;
        };
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue; // the default route
        }
        let cidr = Cidr::of(ip(dest), prefix);
        let description = if flags & RTF_REJECT != 0 {
            format!("route unreachable {cidr}")
        } else if flags & RTF_GATEWAY != 0 {
            format!("route {cidr} via {} dev {}", ip(gateway), fields[0])
        } else {
            format!("route {cidr} dev {}", fields[0])
        };
        routes.push((cidr, description));
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_the_text_form() {
        let c = cidr("172.17.0.0/16");
        assert_eq!(c.addr, Ipv4Addr::new(172, 17, 0, 0));
        assert_eq!(c.prefix, 16);
        assert_eq!(c.to_string(), "172.17.0.0/16");
        assert_eq!(String::from(c), "172.17.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("10.1.2.3/32").to_string(), "10.1.2.3/32");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"172.17.0.0/16\"");
        assert_eq!(serde_json::from_str::<Cidr>(&json).unwrap(), c);
        assert!(serde_json::from_str::<Cidr>("\"172.17.0.1/16\"").is_err());
    }

    #[test]
    fn refuses_malformed_text_long_prefixes_and_host_bits() {
        for bad in [
            "",
            "172.17.0.0",
            "172.17.0.0/",
            "/16",
            "172.17.0/16",
            "172.17.0.0/x",
            "172.17.0.0/+16",
            "172.17.0.0/16/1",
            "256.0.0.0/8",
            " 10.0.0.0/8",
        ] {
            let err = Cidr::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid subnet"), "{bad:?}: {err}");
        }
        assert_eq!(
            Cidr::parse("10.0.0.0/33").unwrap_err(),
            "invalid subnet 10.0.0.0/33: the prefix length is at most 32"
        );
        assert_eq!(
            Cidr::parse("172.17.0.1/16").unwrap_err(),
            "invalid subnet 172.17.0.1/16: it should be 172.17.0.0/16"
        );
        assert_eq!(
            Cidr::parse("192.168.1.77/20").unwrap_err(),
            "invalid subnet 192.168.1.77/20: it should be 192.168.0.0/20"
        );
    }

    #[test]
    fn mask_network_broadcast_and_hosts() {
        let c = cidr("172.17.0.0/16");
        assert_eq!(c.mask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(c.network(), Ipv4Addr::new(172, 17, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(172, 17, 255, 255));
        assert_eq!(c.hosts(), 65534);
        assert_eq!(c.host(1), Some(Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(c.host(256), Some(Ipv4Addr::new(172, 17, 1, 0)));
        assert_eq!(c.host(65534), Some(Ipv4Addr::new(172, 17, 255, 254)));
        assert_eq!(c.host(65535), None);
        assert_eq!(c.host(0), None);

        let small = cidr("10.0.0.4/30");
        assert_eq!(small.mask(), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(small.broadcast(), Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(small.hosts(), 2);
        assert_eq!(small.host(2), Some(Ipv4Addr::new(10, 0, 0, 6)));

        assert_eq!(cidr("10.0.0.0/31").hosts(), 0);
        assert_eq!(cidr("10.0.0.1/32").hosts(), 0);
        assert_eq!(cidr("0.0.0.0/0").mask(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(cidr("0.0.0.0/0").hosts(), u32::MAX - 1);
        assert_eq!(
            cidr("10.1.2.3/32").mask(),
            Ipv4Addr::new(255, 255, 255, 255)
        );
    }

    #[test]
    fn contains_and_overlaps() {
        let c = cidr("10.1.0.0/16");
        assert!(c.contains(Ipv4Addr::new(10, 1, 0, 0)));
        assert!(c.contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 2, 0, 0)));
        assert!(c.overlaps(&cidr("10.0.0.0/8")));
        assert!(cidr("10.0.0.0/8").overlaps(&c));
        assert!(c.overlaps(&cidr("10.1.2.0/24")));
        assert!(c.overlaps(&c));
        assert!(!c.overlaps(&cidr("10.2.0.0/16")));
        assert!(!cidr("192.168.0.0/20").overlaps(&cidr("192.168.16.0/20")));
        assert!(cidr("0.0.0.0/0").overlaps(&c));
    }

    #[test]
    fn of_clears_the_host_bits() {
        let c = Cidr::of(Ipv4Addr::new(192, 168, 1, 5), 24);
        assert_eq!(c.to_string(), "192.168.1.0/24");
        assert_eq!(
            Cidr::of(Ipv4Addr::new(10, 9, 8, 7), 0).to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn default_pools_are_dockers() {
        let pools: Vec<String> = default_pools().iter().map(|p| p.to_string()).collect();
        assert_eq!(pools.len(), 15 + 16);
        assert_eq!(pools[0], "172.17.0.0/16");
        assert_eq!(pools[14], "172.31.0.0/16");
        assert_eq!(pools[15], "192.168.0.0/20");
        assert_eq!(pools[16], "192.168.16.0/20");
        assert_eq!(pools[30], "192.168.240.0/20");
        // None overlaps another.
        let all = default_pools();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(!a.overlaps(b), "{a} {b}");
            }
        }
    }

    fn taken(list: &[(&str, &str)]) -> Vec<(Cidr, String)> {
        list.iter()
            .map(|(c, what)| (cidr(c), what.to_string()))
            .collect()
    }

    #[test]
    fn choose_skips_every_pool_in_use() {
        assert_eq!(choose(&[]).unwrap(), cidr("172.17.0.0/16"));
        let used = taken(&[
            ("172.17.0.0/16", "network bridge"),
            ("172.18.5.0/24", "route 172.18.5.0/24 dev wg0"),
        ]);
        assert_eq!(choose(&used).unwrap(), cidr("172.19.0.0/16"));
        // A LAN on 172.16.0.0/12 takes every 172 pool.
        let used = taken(&[
            ("172.16.0.0/12", "route 172.16.0.0/12 dev eth0"),
            ("192.168.0.0/24", "address 192.168.0.10/24 on wlan0"),
        ]);
        assert_eq!(choose(&used).unwrap(), cidr("192.168.16.0/20"));
        let used = taken(&[
            ("172.16.0.0/12", "route 172.16.0.0/12 dev eth0"),
            ("192.168.0.0/16", "route 192.168.0.0/16 dev eth1"),
        ]);
        assert_eq!(
            choose(&used).unwrap_err().message(),
            "no free address range left in the default pools: give one with --subnet"
        );
    }

    #[test]
    fn check_free_names_the_conflict() {
        let used = taken(&[
            ("192.0.2.0/24", "address 192.0.2.2/24 on eth0"),
            ("10.0.0.0/8", "route 10.0.0.0/8 dev eth0"),
        ]);
        assert!(check_free(&cidr("10.0.0.0/8"), &[]).is_ok());
        assert!(check_free(&cidr("172.18.0.0/16"), &used).is_ok());
        assert_eq!(
            check_free(&cidr("10.1.0.0/16"), &used)
                .unwrap_err()
                .message(),
            "subnet 10.1.0.0/16 overlaps route 10.0.0.0/8 dev eth0 of this host: \
             choose another with --subnet"
        );
        assert_eq!(
            check_free(&cidr("192.0.0.0/8"), &used)
                .unwrap_err()
                .message(),
            "subnet 192.0.0.0/8 overlaps address 192.0.2.2/24 on eth0 of this host: \
             choose another with --subnet"
        );
    }

    #[test]
    fn reads_the_kernel_route_table() {
        // Byte-order: the kernel prints each address's bytes in memory
        // order; build the sample the same way so it holds on any machine.
        let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let text = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t{gw}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t{lan}\t00000000\t0001\t0\t0\t0\t{m24}\t0\t0\t0\n\
             eth0\t{ten}\t{gw}\t0003\t0\t0\t0\t{m8}\t0\t0\t0\n\
             *\t{bh}\t00000000\t0201\t0\t0\t0\t{m16}\t0\t0\t0\n",
            gw = hex([192, 0, 2, 1]),
            lan = hex([192, 0, 2, 0]),
            m24 = hex([255, 255, 255, 0]),
            ten = hex([10, 0, 0, 0]),
            m8 = hex([255, 0, 0, 0]),
            bh = hex([198, 51, 0, 0]),
            m16 = hex([255, 255, 0, 0]),
        );
        assert_eq!(
            parse_proc_route(&text),
            taken(&[
                ("192.0.2.0/24", "route 192.0.2.0/24 dev eth0"),
                ("10.0.0.0/8", "route 10.0.0.0/8 via 192.0.2.1 dev eth0"),
                ("198.51.0.0/16", "route unreachable 198.51.0.0/16"),
            ])
        );
    }

    #[test]
    fn host_ranges_never_holds_the_default_route() {
        // Reads the namespace the tests run in: whatever it holds, the
        // default route is not there and loopback is.
        let ranges = host_ranges().unwrap();
        assert!(ranges.iter().all(|(c, _)| c.prefix > 0));
        if ranges.iter().any(|(_, what)| what.ends_with(" on lo")) {
            assert!(ranges.contains(&(cidr("127.0.0.0/8"), "address 127.0.0.1/8 on lo".into())));
        }
    }
}
