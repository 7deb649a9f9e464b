//! Namespaces: what makes a process a container.
//!
//! A namespace gives a process its own copy of one kind of kernel resource.
//! The process is still an ordinary process of the host kernel (`ps` on the
//! host shows it), but it sees:
//!
//! | namespace | its own …                          | `unshare` flag |
//! |-----------|------------------------------------|----------------|
//! | mount     | mount table (its own `/`)          | `--mount`      |
//! | UTS       | hostname                           | `--uts`        |
//! | IPC       | System V IPC and POSIX queues      | `--ipc`        |
//! | PID       | process numbers: it is PID 1       | `--pid`        |
//! | network   | interfaces, routes, ports: only lo | `--net`        |
//!
//! We create them all at once with `clone(2)`, the system call behind
//! `fork`, given the `CLONE_NEW*` flags: the child is *born* in the new
//! namespaces. That matters for the PID namespace, which only applies to
//! the children of whoever creates it: `unshare --pid` alone leaves the
//! caller outside, which is why the shell form needs `--fork`.

use ch01_images::error::{Error, Result};
use nix::sched::CloneFlags;

// ANCHOR: flags
/// The `clone` flag of each namespace name used in a [`crate::spec::ContainerSpec`].
pub fn clone_flags(names: &[String]) -> Result<CloneFlags> {
    let mut flags = CloneFlags::empty();
    for name in names {
        flags |= match name.as_str() {
            "mount" => CloneFlags::CLONE_NEWNS,
            "uts" => CloneFlags::CLONE_NEWUTS,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            "pid" => CloneFlags::CLONE_NEWPID,
            "network" => CloneFlags::CLONE_NEWNET,
            other => return Err(Error::new(format!("unknown namespace {other:?}"))),
        };
    }
    Ok(flags)
}
// ANCHOR_END: flags

/// The `unshare(1)` command that creates the same namespaces, for `--explain`.
pub fn unshare_command(names: &[String]) -> String {
    let mut cmd = String::from("unshare");
    for name in names {
        cmd.push_str(match name.as_str() {
            "mount" => " --mount",
            "uts" => " --uts",
            "ipc" => " --ipc",
            "pid" => " --pid",
            "network" => " --net",
            _ => "",
        });
    }
    cmd.push_str(" --fork");
    cmd
}

// ANCHOR: loopback
/// Brings up `lo` in the current (new, empty) network namespace.
///
/// A new network namespace has one interface, `lo`, and it is *down*:
/// even `ping 127.0.0.1` fails. `ip link set lo up` would talk netlink;
/// the older interface is enough here: two `ioctl`s on any socket, one to
/// read the interface flags (SIOCGIFFLAGS) and one to write them back with
/// IFF_UP added (SIOCSIFFLAGS).
pub fn bring_up_loopback() -> std::io::Result<()> {
    // SAFETY: plain system calls on a socket we own and a zeroed ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let error = std::io::Error::last_os_error();
        libc::close(sock);
        if result == 0 {
            Ok(())
        } else {
            Err(error)
        }
    }
}
// ANCHOR_END: loopback

#[cfg(test)]
mod tests {
    #[test]
    fn flags_and_shell_form() {
        let names: Vec<String> = crate::spec::NAMESPACES
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            super::unshare_command(&names),
            "unshare --mount --uts --ipc --pid --net --fork"
        );
        assert!(super::clone_flags(&["time".into()]).is_err());
    }
}
