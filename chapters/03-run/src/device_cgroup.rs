//! The devices cgroup: which device files a container may use.
//!
//! A device file is only a name for a (type, major, minor) triple: whoever
//! may create one (root keeps `CAP_MKNOD` in a container, as in docker)
//! can name any device of the host. `mknod /tmp/disk b 7 0` in a container
//! makes a door to the host's first loop device, and an image can ship the
//! same node in a layer. Namespaces do not help: devices are not
//! namespaced. What closes the door is the **devices cgroup**: the kernel
//! asks it at every `open` and `mknod` of a device file, and refuses with
//! `EPERM` ("Operation not permitted") what it does not allow.
//!
//! The policy is docker's, rule by rule ([`default_rules`]):
//! `mknod` of any node is allowed (`c *:* m`, `b *:* m`: harmless, since
//! using it is what is checked), and reading and writing only the devices
//! of a minimal /dev: null, zero, full, random, urandom, tty, console,
//! ptmx and the terminals of /dev/pts. Plus each `--device` the user gave
//! ([`parse_device`]); `--privileged` allows everything (`a *:* rwm`).
//!
//! The same rules reach the kernel two ways:
//! * **cgroup v1**: the `devices` controller's files, in
//!   `/sys/fs/cgroup/devices/crabbox/<id>`: `a` into `devices.deny`
//!   (refuse everything), then one rule per write into `devices.allow`;
//! * **cgroup v2**: no files; an eBPF program attached to the cgroup's
//!   directory (see `device_bpf`).
//!
//! A hybrid host (this project's machines) has both: the v1 controller and
//! an empty cgroup2 tree at `/sys/fs/cgroup/unified`, where a device
//! program needs no controller. The kernel checks the eBPF program of a
//! process's v2 cgroup at every device access whatever v1 says, so one
//! way is enough, and crabbox takes the eBPF program wherever a cgroup2
//! tree exists. The reason is speed: a process is born straight into its
//! v2 cgroup (`clone3` with `CLONE_INTO_CGROUP`, see `process`), while
//! moving it into a v1 cgroup takes 8 to 20 ms on these machines (see
//! `cgroups::add`), more than the rest of a container start.
//! `CRABBOX_DEVICE_CGROUP=v1`, `=v2` or `=both` chooses (the tests use it
//! to prove each way works by itself). A v1 host without the cgroup2 tree
//! has only the v1 files.

use crate::cgroups::{self, CGROUP_ROOT};
use crate::security::{DeviceMapping, Security};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// The environment variable that chooses: `v1`, `v2` or `both`.
pub const CHOICE_VARIABLE: &str = "CRABBOX_DEVICE_CGROUP";

/// What kind of device a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `a`: every device, character and block.
    All,
    /// `c`: a character device (terminals, /dev/null, …).
    Char,
    /// `b`: a block device (disks, loop devices, …).
    Block,
}

/// One rule, as the v1 `devices.allow` file takes it: `c 1:3 rwm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    /// `None`: any major (`*`).
    pub major: Option<u32>,
    /// `None`: any minor (`*`).
    pub minor: Option<u32>,
    /// Any of `r` (read), `w` (write), `m` (mknod).
    pub access: String,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::All => 'a',
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{kind} {}:{} {}",
            number(self.major),
            number(self.minor),
            self.access
        )
    }
}

fn rule(kind: Kind, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
    Rule {
        kind,
        major,
        minor,
        access: access.into(),
    }
}

// ANCHOR: defaults
/// docker's default device rules, in order: runc's `AllowedDevices`
/// with /dev/console, and without the `/dev/net/tun` that runc keeps only
/// for old users (a container without `CAP_NET_ADMIN` has no use for it).
pub fn default_rules() -> Vec<Rule> {
    use Kind::{Block, Char};
    vec![
        // mknod of any node: only using it is checked.
        rule(Char, None, None, "m"),
        rule(Block, None, None, "m"),
        rule(Char, Some(1), Some(3), "rwm"), // /dev/null
        rule(Char, Some(1), Some(5), "rwm"), // /dev/zero
        rule(Char, Some(1), Some(7), "rwm"), // /dev/full
        rule(Char, Some(1), Some(8), "rwm"), // /dev/random
        rule(Char, Some(1), Some(9), "rwm"), // /dev/urandom
        rule(Char, Some(5), Some(0), "rwm"), // /dev/tty
        rule(Char, Some(5), Some(1), "rwm"), // /dev/console
        rule(Char, Some(5), Some(2), "rwm"), // /dev/ptmx
        rule(Char, Some(136), None, "rwm"),  // /dev/pts/*
    ]
}
// ANCHOR_END: defaults

/// The rules of one container: everything with `--privileged`; docker's
/// defaults and each `--device` otherwise.
pub fn rules(security: &Security) -> Vec<Rule> {
    if security.privileged {
        return vec![rule(Kind::All, None, None, "rwm")];
    }
    let mut rules = default_rules();
    for device in &security.devices {
        let kind = if device.kind == 'b' {
            Kind::Block
        } else {
            Kind::Char
        };
        rules.push(rule(
            kind,
            Some(device.major as u32),
            Some(device.minor as u32),
            &device.permissions,
        ));
    }
    rules
}

/// Where the rules go on this host: the v1 `devices` hierarchy, the root
/// of a cgroup2 tree for the eBPF program, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforcement {
    /// `/sys/fs/cgroup/devices`, when v1 rules are written.
    pub v1: Option<PathBuf>,
    /// `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`, when the eBPF
    /// program is attached.
    pub v2: Option<PathBuf>,
}

/// What this host offers, narrowed by `CRABBOX_DEVICE_CGROUP`. A
/// container with no device limit at all is refused, not started.
pub fn enforcement() -> Result<Enforcement> {
    let devices = Path::new(CGROUP_ROOT).join("devices");
    let v1 = (cgroups::detect() == cgroups::Version::V1 && devices.join("devices.allow").exists())
        .then_some(devices);
    let v2 = cgroups::unified_root();
    let choice = std::env::var(CHOICE_VARIABLE).unwrap_or_default();
    let chosen = match choice.as_str() {
        "" if v2.is_some() => Enforcement { v1: None, v2 },
        "" | "both" => Enforcement { v1, v2 },
        "v1" if v1.is_some() => Enforcement { v1, v2: None },
        "v2" if v2.is_some() => Enforcement { v1: None, v2 },
        "v1" => {
            return Err(Error::new(format!(
                "{CHOICE_VARIABLE}=v1: this host has no cgroup v1 devices controller at {CGROUP_ROOT}/devices — use v2 or leave the variable unset"
            )))
        }
        "v2" => {
            return Err(Error::new(format!(
                "{CHOICE_VARIABLE}=v2: this host has no cgroup2 tree (neither {CGROUP_ROOT} nor {CGROUP_ROOT}/unified) — use v1 or leave the variable unset"
            )))
        }
        other => {
            return Err(Error::new(format!(
                "{CHOICE_VARIABLE}={other}: give v1, v2 or both (default: v2 where the host has a cgroup2 tree, else v1)"
            )))
        }
    };
    if chosen.v1.is_none() && chosen.v2.is_none() {
        return Err(Error::new(format!(
            "no way to limit devices on this host: no cgroup v1 devices controller at {CGROUP_ROOT}/devices and no cgroup2 tree — a container could open any disk of the host, so none is started"
        )));
    }
    Ok(chosen)
}

// ANCHOR: apply
/// Limits the devices of cgroup `cgroup` (`crabbox/<id>`), before the
/// container's first process joins it. Called again at each start, it
/// sets the same rules again.
pub fn apply(cgroup: &str, security: &Security) -> Result<()> {
    let rules = rules(security);
    let how = enforcement()?;
    if let Some(root) = &how.v1 {
        let dir = root.join(cgroup);
        cgroups::mkdir(&dir)?;
        let (deny, allow) = (dir.join("devices.deny"), dir.join("devices.allow"));
        if security.privileged {
            explain::step(
                "cgroup v1 devices: --privileged, every device allowed",
                Some(&format!("echo a > {}", allow.display())),
            );
            write_v1(&allow, "a")?;
        } else {
            let quoted: Vec<String> = rules
                .iter()
                .map(|r| explain::shell_quote(&r.to_string()))
                .collect();
            explain::step(
                "cgroup v1 devices: refuse every device, then allow docker's defaults, one rule per write",
                Some(&format!(
                    "echo a > {}; for rule in {}; do echo \"$rule\" > {}; done",
                    deny.display(),
                    quoted.join(" "),
                    allow.display()
                )),
            );
            write_v1(&deny, "a")?;
            for rule in &rules {
                write_v1(&allow, &rule.to_string())?;
            }
        }
    }
    if let Some(root) = &how.v2 {
        let dir = root.join(cgroup);
        cgroups::mkdir(&dir)?;
        if security.privileged {
            explain::step(
                "cgroup v2 devices: --privileged, no device filter attached (every device allowed)",
                None,
            );
        } else {
            crate::device_bpf::install(&dir, &rules)?;
        }
    }
    Ok(())
}
// ANCHOR_END: apply

/// One write to a v1 devices file: the kernel reads one rule per write.
fn write_v1(file: &Path, rule: &str) -> Result<()> {
    std::fs::write(file, rule).map_err(|e| {
        Error::new(format!(
            "cgroup v1 devices: writing {rule:?} to {}: {e}",
            file.display()
        ))
    })
}

// ANCHOR: parse
/// Parses `--device /dev/HOST[:/dev/CTR[:rwm]]` as docker does (also
/// `HOST:rwm`): the host path must be a device file, whose type and
/// numbers are read now; the container path must be under /dev.
pub fn parse_device(text: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, permissions) = match parts[..] {
        [host] => (host, host, "rwm"),
        [host, mode] if valid_permissions(mode) => (host, host, mode),
        [host, container] => (host, container, "rwm"),
        [host, container, mode] => (host, container, mode),
        _ => {
            return Err(Error::new(format!(
                "invalid --device {text}: give /dev/HOST[:/dev/CONTAINER[:PERMISSIONS]]"
            )))
        }
    };
    if !valid_permissions(permissions) {
        return Err(Error::new(format!(
            "invalid --device {text}: permissions {permissions:?} must be letters among r (read), w (write), m (mknod), each once"
        )));
    }
    let container_path = Path::new(container);
    let inside_dev = container_path.starts_with("/dev")
        && container_path != Path::new("/dev")
        && container_path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !inside_dev {
        return Err(Error::new(format!(
            "invalid --device {text}: the path in the container, {container:?}, must be a plain path under /dev (e.g. /dev/xvdc)"
        )));
    }
    let metadata = std::fs::metadata(host).map_err(|e| {
        Error::new(format!(
            "--device {host}: {e} — give the path of a device file on the host, e.g. /dev/loop0"
        ))
    })?;
    let kind = if metadata.file_type().is_block_device() {
        'b'
    } else if metadata.file_type().is_char_device() {
        'c'
    } else {
        return Err(Error::new(format!(
            "--device {host}: not a device file — give a character or block device of the host, e.g. /dev/loop0"
        )));
    };
    let rdev = std::os::unix::fs::MetadataExt::rdev(&metadata);
    Ok(DeviceMapping {
        host: host.to_string(),
        container: container.to_string(),
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        permissions: permissions.to_string(),
    })
}

/// docker's rule: one to three of `r`, `w`, `m`, none twice.
fn valid_permissions(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| "rwm".contains(c))
        && text.char_indices().all(|(i, c)| !text[..i].contains(c))
}
// ANCHOR_END: parse

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_read_as_dockers_devices_list() {
        let text: Vec<String> = default_rules().iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 5:2 rwm",
                "c 136:* rwm",
            ]
        );
    }

    #[test]
    fn privileged_allows_all_and_devices_add_rules() {
        let privileged = Security {
            privileged: true,
            ..Security::default()
        };
        assert_eq!(
            rules(&privileged)
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>(),
            ["a *:* rwm"]
        );
        let with_loop = Security {
            devices: vec![DeviceMapping {
                host: "/dev/loop3".into(),
                container: "/dev/xvdc".into(),
                kind: 'b',
                major: 7,
                minor: 3,
                permissions: "r".into(),
            }],
            ..Security::default()
        };
        let all = rules(&with_loop);
        assert_eq!(all.len(), default_rules().len() + 1);
        assert_eq!(all.last().unwrap().to_string(), "b 7:3 r");
    }

    #[test]
    fn parse_device_follows_docker() {
        let null = parse_device("/dev/null").unwrap();
        assert_eq!(
            (null.container.as_str(), null.kind, null.major, null.minor),
            ("/dev/null", 'c', 1, 3)
        );
        assert_eq!(null.permissions, "rwm");
        let renamed = parse_device("/dev/null:/dev/nothing:rw").unwrap();
        assert_eq!(
            (renamed.host.as_str(), renamed.container.as_str()),
            ("/dev/null", "/dev/nothing")
        );
        assert_eq!(renamed.permissions, "rw");
        // HOST:PERMISSIONS, docker's short form.
        let short = parse_device("/dev/null:r").unwrap();
        assert_eq!(
            (short.container.as_str(), short.permissions.as_str()),
            ("/dev/null", "r")
        );
        for bad in [
            "/dev/null:/dev/x:rwx",
            "/dev/null:/dev/x:rr",
            "/dev/null:/dev/x:",
            "/dev/null:/tmp/x",
            "/dev/null:/dev/../etc/x",
            "/dev/null:dev/x",
            "/dev/null:/dev",
            "/dev/null:/dev/x:r:w",
            "/dev/crabbox-no-such-device",
            "/etc/hostname:/dev/x",
        ] {
            let error = parse_device(bad).expect_err(bad);
            assert!(!error.message().contains('\n'), "{bad}: one line");
        }
        assert!(parse_device("/etc/hostname:/dev/x")
            .unwrap_err()
            .message()
            .contains("not a device file"));
    }
}
