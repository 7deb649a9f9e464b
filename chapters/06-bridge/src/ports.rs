//! Publishing a port: a container's port reachable at a port of the host.
//!
//! ```text
//! -p 8080:80             host 0.0.0.0:8080    ─▶ container :80/tcp
//! -p 127.0.0.1:8080:80   host 127.0.0.1:8080  ─▶ container :80/tcp
//! -p 80                  host 0.0.0.0:<free>  ─▶ container :80/tcp
//! -p 5353:53/udp         udp
//! -p 8000-8001:80-81     a range, port by port
//! -P                     every EXPOSE of the image, each on a free host port
//! ```
//!
//! The container's address is on a network only the host can reach: a
//! published port is a rewrite of the destination (DNAT, see [`crate::nat`])
//! of what arrives at the host's port, towards the container's address and
//! port. Nothing listens on the host's port itself, so the engine
//! **reserves** it: it binds a socket there for as long as the container
//! runs (held by the process that waits for the container: the
//! foreground `run`, or its monitor), so that no other program, and no
//! other container, can take it meanwhile. A port already taken is an
//! error before the container starts, as docker's `port is already
//! allocated`.

use ch01_images::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

/// One published port, as saved in the container's config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The host address it is published on; `0.0.0.0`: all of them.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl Published {
    /// `0.0.0.0:8080->80/tcp`, as `ps` shows it.
    pub fn ps(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.protocol
        )
    }

    /// `80/tcp`, the key of `inspect`'s `Ports`.
    pub fn private(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// A `-p` request before host ports are chosen (0: any free one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

// ANCHOR: parse
/// Reads one `-p` value: `[IP:][HOSTPORT:]CTRPORT[/PROTO]`, ranges too.
pub fn parse(text: &str) -> Result<Vec<Request>> {
    let bad = |why: &str| {
        Error::new(format!(
            "invalid port specification {text:?}: {why} (write [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], e.g. 8080:80)"
        ))
    };
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, protocol)) => (spec, protocol.to_ascii_lowercase()),
        None => (text, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(bad("the protocol is tcp, udp or sctp"));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [container] => ("", "", *container),
        [host, container] => ("", *host, *container),
        [ip, host, container] => (*ip, *host, *container),
        _ => return Err(bad("too many ':'")),
    };
    let host_ip = match ip {
        "" => Ipv4Addr::UNSPECIFIED,
        ip => ip
            .parse()
            .map_err(|_| bad(&format!("{ip} is not an IPv4 address")))?,
    };
    let containers = range(container).map_err(|e| bad(&e))?;
    let hosts = match host {
        "" => vec![0; containers.len()],
        host => range(host).map_err(|e| bad(&e))?,
    };
    if hosts.len() != containers.len() {
        return Err(bad("the host and container ranges differ in length"));
    }
    Ok(hosts
        .into_iter()
        .zip(containers)
        .map(|(host_port, container_port)| Request {
            host_ip,
            host_port,
            container_port,
            protocol: protocol.clone(),
        })
        .collect())
}
// ANCHOR_END: parse

/// `80` or `8000-8010`: ports from 1 to 65535.
fn range(text: &str) -> std::result::Result<Vec<u16>, String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p} is not a port (1 to 65535)"))
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if last < first {
        return Err(format!("{text} is an empty range"));
    }
    Ok((first..=last).collect())
}

/// `-P`: each port the image EXPOSEs (`80/tcp`, `53/udp`), on a free port.
pub fn publish_all(exposed: &[String]) -> Result<Vec<Request>> {
    let mut requests = Vec::new();
    for port in exposed {
        for request in parse(port)? {
            requests.push(request);
        }
    }
    Ok(requests)
}

// ANCHOR: reserve
/// A host port held for a container: a socket bound there. Dropping it
/// frees the port.
pub enum Reservation {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the host port of `request` (0: a free one, chosen by the
/// kernel); docker's message if it is taken.
pub fn reserve(host_ip: Ipv4Addr, host_port: u16, protocol: &str) -> Result<(Reservation, u16)> {
    let address = SocketAddrV4::new(host_ip, host_port);
    let taken = |e: std::io::Error| {
        Error::new(format!(
            "Bind for {host_ip}:{host_port} failed: port is already allocated ({e}) — publish on another host port"
        ))
    };
    match protocol {
        // An SCTP socket would need the kernel's sctp module: its port
        // is checked as TCP's is, a stand-in.
        "udp" => {
            let socket = UdpSocket::bind(address).map_err(taken)?;
            let port = socket.local_addr().map(|a| a.port()).unwrap_or(host_port);
            Ok((Reservation::Udp(socket), port))
        }
        _ => {
            // Bound, never accepting: the kernel rewrites (DNAT) what
            // arrives for this port before any socket sees it.
            let socket = TcpListener::bind(address).map_err(taken)?;
            let port = socket.local_addr().map(|a| a.port()).unwrap_or(host_port);
            Ok((Reservation::Tcp(socket), port))
        }
    }
}
// ANCHOR_END: reserve

/// Chooses the host ports of `requests` (a free one for each 0) and
/// checks every one can be had now: what `create` saves. The sockets are
/// let go at once; the process that waits for the container binds them
/// again when it starts ([`reserve`]).
pub fn choose(requests: &[Request]) -> Result<Vec<Published>> {
    let mut held = Vec::new();
    let mut published = Vec::new();
    for request in requests {
        let (reservation, port) = reserve(request.host_ip, request.host_port, &request.protocol)?;
        held.push(reservation);
        published.push(Published {
            host_ip: request.host_ip,
            host_port: port,
            container_port: request.container_port,
            protocol: request.protocol.clone(),
        });
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_p() {
        let one = |t: &str| parse(t).unwrap();
        assert_eq!(
            one("8080:80"),
            vec![Request {
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into()
            }]
        );
        assert_eq!(one("127.0.0.1:8080:80")[0].host_ip, Ipv4Addr::LOCALHOST);
        assert_eq!(one("80")[0].host_port, 0);
        assert_eq!(one("127.0.0.1::80")[0].host_port, 0);
        assert_eq!(one("5353:53/UDP")[0].protocol, "udp");
        assert_eq!(one("8000-8002:80-82").len(), 3);
        assert_eq!(one("8000-8002:80-82")[2].container_port, 82);
        for bad in [
            "70000:80",
            "abc",
            "80/icmp",
            "1:2:3:4",
            "8000-8001:80",
            "0:80",
            "a.b:1:2",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        assert!(parse("70000:80").unwrap_err().to_string().contains("70000"));
    }

    #[test]
    fn a_port_in_use_is_refused_and_a_free_one_found() {
        let (held, port) = reserve(Ipv4Addr::LOCALHOST, 0, "tcp").unwrap();
        assert_ne!(port, 0);
        let err = reserve(Ipv4Addr::LOCALHOST, port, "tcp").err().unwrap();
        assert!(
            err.to_string().contains("port is already allocated"),
            "{err}"
        );
        drop(held);
        assert!(reserve(Ipv4Addr::LOCALHOST, port, "tcp").is_ok());
    }
}
