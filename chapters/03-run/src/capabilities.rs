//! Capabilities: root, cut down to size.
//!
//! Root's power is split into about 40 capabilities (CAP_SYS_ADMIN to
//! mount, CAP_NET_ADMIN to configure the network, CAP_SYS_MODULE to load
//! kernel modules, …). Docker keeps 14 of them for containers, enough for
//! what a root process in an image usually does (chown files, bind port 80,
//! switch users) and nothing that reaches beyond the container.
//!
//! A process has several capability sets. We make every one of them
//! docker's set or less:
//! * **bounding**: the ceiling, what any later `exec` can ever get back;
//!   dropped one by one with `prctl(PR_CAPBSET_DROP)`;
//! * **effective / permitted / inheritable**: what the process has now,
//!   may have, and passes on; set with `capset(2)` (inheritable is empty,
//!   as in current docker and runc);
//! * **ambient**: cleared.
//!
//! Then **no_new_privs**: no `exec` can gain privileges again (setuid
//! binaries and file capabilities stop working), whatever the image holds.

use ch01_images::explain;

/// Docker's default capabilities, by number (see capabilities(7)).
pub const DOCKER_DEFAULT: [(u32, &str); 14] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// Every capability's name, by number (capabilities(7); 41 in Linux 6.x).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit of capability `name` (`NET_ADMIN`, `cap_net_admin`; `ALL` is
/// every one), as docker's `--cap-add` and `--cap-drop` take them.
pub fn mask_of(name: &str) -> Result<u64, ch01_images::error::Error> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(all_mask());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES
        .iter()
        .position(|n| *n == full)
        .map(|bit| 1u64 << bit)
        .ok_or_else(|| {
            ch01_images::error::Error::new(format!(
                "unknown capability {name:?} — see capabilities(7) for the names (e.g. NET_ADMIN)"
            ))
        })
}

/// Every capability this engine can hand on: the ones in its own bounding
/// set (`CapBnd` in /proc/self/status; all the kernel knows, unless the
/// engine itself runs with fewer, as inside another container).
pub fn all_mask() -> u64 {
    let everything = (0..=last_cap().min(63)).fold(0, |mask, n| mask | 1 << n);
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(everything);
    everything & bounding
}

/// The names of the capabilities in `mask`, shortest form (`CHOWN …`).
pub fn names_in(mask: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The default set as a bit mask: what /proc/self/status shows as CapEff
/// for root in a docker container (00000000a80425fb).
pub fn default_mask() -> u64 {
    DOCKER_DEFAULT.iter().fold(0, |mask, (n, _)| mask | 1 << n)
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

// ANCHOR: drop
/// Drops every capability outside `keep` (a bit mask) from every set.
pub fn restrict_to(keep: u64) -> Result<(), String> {
    let kept = names_in(keep);
    let what = if keep == default_mask() {
        "keep only docker's default capabilities"
    } else {
        "keep only these capabilities"
    };
    explain::step(
        &format!(
            "{what} ({}), drop the rest from every set, bounding included",
            kept.join(" ")
        ),
        Some(&format!(
            "capsh --caps='{}+ep' --inh='' -- …   # drops from the bounding set too",
            kept.iter()
                .map(|n| n.to_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        )),
    );
    for cap in 0..=last_cap() {
        if keep & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(format!(
                    "dropping capability {cap} from the bounding set: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    capset(keep, keep, 0)
}
// ANCHOR_END: drop

/// `capset(2)` with the 64-bit interface (version 3: two 32-bit halves).
fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |v: u64, i: usize| (v >> (32 * i)) as u32;
    let data: [Data; 2] = std::array::from_fn(|i| Data {
        effective: half(effective, i),
        permitted: half(permitted, i),
        inheritable: half(inheritable, i),
    });
    // SAFETY: the header and data layouts are the kernel's (linux/capability.h).
    let result = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if result == 0 {
        Ok(())
    } else {
        Err(format!("capset: {}", std::io::Error::last_os_error()))
    }
}

// ANCHOR: no_new_privs
/// `prctl(PR_SET_NO_NEW_PRIVS)`: this process and its children can never
/// gain privileges through exec (setuid bits and file capabilities are ignored).
pub fn set_no_new_privs() -> Result<(), String> {
    explain::step(
        "no exec may gain privileges again (setuid binaries included)",
        Some("setpriv --no-new-privs …"),
    );
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(format!("no_new_privs: {}", std::io::Error::last_os_error()))
    }
}
// ANCHOR_END: no_new_privs

#[cfg(test)]
mod tests {
    #[test]
    fn the_mask_is_dockers() {
        assert_eq!(
            format!("{:016x}", super::default_mask()),
            "00000000a80425fb"
        );
        for (bit, name) in super::DOCKER_DEFAULT {
            assert_eq!(super::NAMES[bit as usize], name);
        }
    }
}
