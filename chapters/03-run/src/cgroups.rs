//! Resource limits with cgroups: `--memory`, `--pids-limit`, `--cpus`.
//!
//! Namespaces decide what a container *sees*; control groups decide how
//! much it may *use*. A cgroup is a directory in a special filesystem:
//! `mkdir` makes one, writing a number into one of its files sets a limit,
//! writing a PID into `cgroup.procs` puts a process (and every child it
//! will have) under those limits, and `rmdir` removes it once it is empty.
//!
//! Two versions live side by side in Linux:
//! * **cgroup v2** (most hosts today): one tree at `/sys/fs/cgroup`, the
//!   controllers a child may use switched on in its parent's
//!   `cgroup.subtree_control`; files `memory.max`, `memory.swap.max`,
//!   `pids.max`, `cpu.max`.
//! * **cgroup v1** (older hosts, and this project's machines): one tree per
//!   controller, `/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`,
//!   `/sys/fs/cgroup/cpu`; files `memory.limit_in_bytes`,
//!   `memory.memsw.limit_in_bytes`, `pids.max`, `cpu.cfs_quota_us`.
//!
//! A "hybrid" host mounts v1 controllers *and* an empty v2 tree at
//! `/sys/fs/cgroup/unified`; the v2 tree has no controllers there, so v1 is
//! what limits anything. Each container gets the cgroup `crabbox/<id>`
//! (docker's is `docker/<id>`), made before it starts and removed with it,
//! even without limits: its devices cgroup decides which device files it
//! may use (see `device_cgroup`), in the v1 `devices` hierarchy and in the
//! v2 tree (the `unified` one on a hybrid host).

use crate::security::Security;
use crate::spec::Resources;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use clap::Args;
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The controllers crabbox uses for limits.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The v1 controller that limits devices (see `device_cgroup`).
const DEVICES: &str = "devices";

/// The scheduler period `--cpus` is a fraction of, in microseconds (docker's).
const CPU_PERIOD: u64 = 100_000;

// ANCHOR: args
/// `run`'s resource flags, with docker's names and units.
#[derive(Args, Clone, Debug, Default)]
pub struct ResourceArgs {
    /// Memory limit, e.g. 64m (units b, k, m, g)
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Memory plus swap, e.g. 128m (default: twice --memory; -1: unlimited swap)
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// At most this many processes (and threads) in the container
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u64>,
    /// How many CPUs' worth of time, e.g. 0.5 or 1.5
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<f64>,
}
// ANCHOR_END: args

/// The limits of `run`'s resource flags, parsed: what `create` takes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// `--memory`: bytes of RAM.
    pub memory: Option<u64>,
    /// `--memory-swap`: bytes of RAM and swap together (-1: unlimited swap).
    pub memory_swap: Option<i64>,
    /// `--pids-limit`.
    pub pids: Option<u64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
}

impl Limits {
    /// These limits on container `id`'s cgroup, `crabbox/<id>`. Every
    /// container has one, for its devices if for nothing else.
    pub fn in_cgroup(self, id: &str) -> Resources {
        Resources {
            cgroup: format!("crabbox/{id}"),
            memory: self.memory,
            memory_swap: self.memory_swap,
            pids: self.pids,
            cpus: self.cpus,
        }
    }
}

impl ResourceArgs {
    /// The limits these flags ask for, checked as docker does (an error
    /// names the flag; `run` then exits 125, having made nothing).
    pub fn parse(&self) -> Result<Limits> {
        let size = |flag: &str, text: &str| {
            parse_bytes(text).map_err(|e| Error::new(format!("invalid {flag} {}", e.message())))
        };
        let memory = self
            .memory
            .as_deref()
            .map(|text| size("--memory", text))
            .transpose()?;
        let memory_swap = match (memory, self.memory_swap.as_deref()) {
            (None, Some(_)) => {
                return Err(Error::new(
                    "--memory-swap needs --memory: it is memory plus swap",
                ))
            }
            (None, None) => None,
            (Some(_), Some("-1")) => Some(-1),
            (Some(memory), Some(text)) => {
                let total = size("--memory-swap", text)?;
                if total < memory {
                    return Err(Error::new(format!(
                        "--memory-swap {text} is smaller than --memory: it counts memory plus swap, so give at least as much"
                    )));
                }
                Some(total as i64)
            }
            // docker's default: as much swap as memory.
            (Some(memory), None) => Some(2 * memory as i64),
        };
        if let Some(cpus) = self.cpus {
            if !(cpus > 0.0 && cpus.is_finite()) {
                return Err(Error::new(format!(
                    "invalid --cpus {cpus}: give a positive number such as 0.5"
                )));
            }
        }
        if self.pids_limit == Some(0) {
            return Err(Error::new("invalid --pids-limit 0: give at least 1"));
        }
        Ok(Limits {
            memory,
            memory_swap,
            pids: self.pids_limit,
            cpus: self.cpus,
        })
    }
}

/// Parses docker's memory sizes: `1024`, `512k`, `64m`, `1g` (also `64mb`,
/// case-insensitive). Units are powers of 1024.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let trimmed = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match trimmed.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&trimmed[..i], c),
        _ => (trimmed, 'b'),
    };
    let multiplier: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => 0,
    };
    let value: Option<f64> = number.parse().ok();
    match value {
        Some(v) if multiplier > 0 && v >= 0.0 && v.is_finite() => {
            let bytes = (v * multiplier as f64) as u64;
            if bytes < 6 << 20 {
                return Err(Error::new(format!("{text}: the minimum is 6m (docker's)")));
            }
            Ok(bytes)
        }
        _ => Err(Error::new(format!(
            "{text:?}: give a number with an optional unit b, k, m or g (e.g. 64m)"
        ))),
    }
}

/// Which cgroup version this host uses for our controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// v2 when `/sys/fs/cgroup` itself is a cgroup2 mount (a "unified"
/// host); v1 otherwise, including hybrid hosts, whose cgroup2 tree at
/// `/sys/fs/cgroup/unified` holds no controllers.
pub fn detect() -> Version {
    let is_cgroup2 = nix::sys::statfs::statfs(CGROUP_ROOT)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if is_cgroup2 {
        Version::V2
    } else {
        Version::V1
    }
}

/// The controllers a set of limits needs.
fn needed(r: &Resources) -> Vec<&'static str> {
    let mut needed = Vec::new();
    if r.memory.is_some() {
        needed.push("memory");
    }
    if r.pids.is_some() {
        needed.push("pids");
    }
    if r.cpus.is_some() {
        needed.push("cpu");
    }
    needed
}

/// The root of the cgroup2 tree: `/sys/fs/cgroup` on a v2 host, the
/// controller-less `/sys/fs/cgroup/unified` on a hybrid one, or none.
pub fn unified_root() -> Option<PathBuf> {
    match detect() {
        Version::V2 => Some(PathBuf::from(CGROUP_ROOT)),
        Version::V1 => {
            let unified = Path::new(CGROUP_ROOT).join("unified");
            let is_cgroup2 = nix::sys::statfs::statfs(&unified)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
            is_cgroup2.then_some(unified)
        }
    }
}

/// `echo VALUE > FILE`, narrated.
pub(crate) fn write(file: &Path, value: &str) -> Result<()> {
    explain::step(
        &format!(
            "cgroup: set {}",
            file.file_name().unwrap_or_default().to_string_lossy()
        ),
        Some(&format!(
            "echo {} > {}",
            explain::shell_quote(value),
            file.display()
        )),
    );
    std::fs::write(file, value).map_err(|e| {
        Error::new(format!(
            "cgroup: writing {value} to {}: {e}",
            file.display()
        ))
    })
}

pub(crate) fn mkdir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    explain::step(
        "make the container's cgroup",
        Some(&format!("mkdir -p {}", dir.display())),
    );
    std::fs::create_dir_all(dir).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " — cgroups need root (sudo)"
        } else {
            ""
        };
        Error::new(format!("cgroup: mkdir {}: {e}{hint}", dir.display()))
    })
}

/// The directories of a cgroup: one on v2; on v1, one per controller
/// and the one in the hybrid host's `unified` tree.
fn dirs(version: Version, cgroup: &str) -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    match version {
        Version::V2 => vec![root.join(cgroup)],
        Version::V1 => CONTROLLERS
            .iter()
            .chain([&DEVICES, &"unified"])
            .map(|c| root.join(c).join(cgroup))
            .filter(|d| d.parent().is_some_and(|p| p.exists()) || d.exists())
            .collect(),
    }
}

/// Every directory where crabbox may have made this cgroup (v1 and v2).
fn all_dirs(cgroup: &str) -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let mut all = vec![root.join(cgroup)];
    all.extend(
        CONTROLLERS
            .iter()
            .chain([&DEVICES, &"unified"])
            .map(|c| root.join(c).join(cgroup)),
    );
    all
}

/// Did the kernel's OOM killer kill a process of this cgroup? Its count
/// of OOM kills: `oom_kill N` in `memory.events` (v2) or in
/// `memory.oom_control` (v1). Read before the cgroup is removed.
pub fn oom_killed(resources: &Resources) -> bool {
    if resources.memory.is_none() {
        return false;
    }
    let root = Path::new(CGROUP_ROOT);
    let file = match detect() {
        Version::V2 => root.join(&resources.cgroup).join("memory.events"),
        Version::V1 => root
            .join("memory")
            .join(&resources.cgroup)
            .join("memory.oom_control"),
    };
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines().any(|line| {
            line.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
    })
}

// ANCHOR: create
/// Makes the cgroup, writes the limits and the device rules, before the
/// container exists.
pub fn create(resources: &Resources, security: &Security) -> Result<()> {
    let result = create_inner(resources)
        .and_then(|()| crate::device_cgroup::apply(&resources.cgroup, security));
    if result.is_err() {
        let _ = remove(resources);
    }
    result
}

fn create_inner(r: &Resources) -> Result<()> {
    let root = Path::new(CGROUP_ROOT);
    match detect() {
        Version::V2 => {
            let available =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let needed = needed(r);
            if let Some(missing) = needed
                .iter()
                .find(|c| !available.split_whitespace().any(|a| a == **c))
            {
                return Err(Error::new(format!(
                    "cgroup v2: the {missing} controller is not available in {CGROUP_ROOT}/cgroup.controllers — drop that limit, or enable the controller on this host"
                )));
            }
            // Each level hands the controllers down to the next one.
            let enable = needed
                .iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ");
            let enabled_in = |dir: &Path| {
                let on =
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                needed
                    .iter()
                    .all(|c| on.split_whitespace().any(|o| o == *c))
            };
            let parent = root.join(Path::new(&r.cgroup).parent().unwrap_or(Path::new("")));
            for dir in [root, parent.as_path()] {
                mkdir(dir)?;
                if !enabled_in(dir) {
                    write(&dir.join("cgroup.subtree_control"), &enable)?;
                }
            }
            let dir = root.join(&r.cgroup);
            mkdir(&dir)?;
            if let Some(bytes) = r.memory {
                write(&dir.join("memory.max"), &bytes.to_string())?;
                // v2 limits swap alone, not memory plus swap.
                if dir.join("memory.swap.max").exists() {
                    let swap = match r.memory_swap {
                        Some(total) if total >= 0 => (total as u64 - bytes).to_string(),
                        _ => "max".to_string(),
                    };
                    write(&dir.join("memory.swap.max"), &swap)?;
                }
            }
            if let Some(pids) = r.pids {
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
            if let Some(cpus) = r.cpus {
                let quota = (cpus * CPU_PERIOD as f64).round().max(1000.0) as u64;
                write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD}"))?;
            }
        }
        Version::V1 => {
            for c in needed(r) {
                if !root.join(c).join("cgroup.procs").exists() {
                    return Err(Error::new(format!(
                        "cgroup v1: the {c} controller is not mounted at {CGROUP_ROOT}/{c} — drop that limit, or mount it (mount -t cgroup -o {c} cgroup {CGROUP_ROOT}/{c})"
                    )));
                }
            }
            let controller = |c: &str| root.join(c).join(&r.cgroup);
            if let Some(bytes) = r.memory {
                let dir = controller("memory");
                mkdir(&dir)?;
                write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                // memory+swap: only there when the kernel accounts swap.
                // Only there when the kernel accounts swap (swapaccount=1);
                // without it, swap is not limited, as with docker.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    let total = r.memory_swap.unwrap_or(-1);
                    write(&memsw, &total.to_string())?;
                }
            }
            if let Some(pids) = r.pids {
                let dir = controller("pids");
                mkdir(&dir)?;
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
            if let Some(cpus) = r.cpus {
                let dir = controller("cpu");
                mkdir(&dir)?;
                let quota = (cpus * CPU_PERIOD as f64).round().max(1000.0) as u64;
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
    }
    Ok(())
}
// ANCHOR_END: create

/// The container's cgroup v2 directory, if it has one: under
/// `/sys/fs/cgroup` on a v2 host, under `/sys/fs/cgroup/unified` on a
/// hybrid one. [`crate::process::spawn`] starts the child right in it.
pub fn v2_dir(resources: &Resources) -> Option<PathBuf> {
    let dir = unified_root()?.join(&resources.cgroup);
    dir.is_dir().then_some(dir)
}

// ANCHOR: add
/// Puts `pid` (a single-threaded process: the container's PID 1 still
/// waiting at the gate, or `exec`'s helper) into the cgroup: everything it
/// will start is limited too. `in_v2`: it was born in the v2 directory
/// already (`clone3` with `CLONE_INTO_CGROUP`), which is then left alone.
///
/// Why not simply `echo PID > cgroup.procs` everywhere? Moving a whole
/// process takes a kernel-wide lock whose write side waits for every CPU
/// to pass a quiet point (an RCU grace period): 5 to 15 ms each time, more
/// than the rest of a container start. A v1 hierarchy's `tasks` file moves
/// one thread without that lock, and a single-threaded process is one
/// thread; v2 has no such file, hence `CLONE_INTO_CGROUP`.
pub fn add(resources: &Resources, pid: Pid, in_v2: bool) -> Result<()> {
    let v2 = v2_dir(resources);
    for dir in dirs(detect(), &resources.cgroup) {
        if !dir.is_dir() || (in_v2 && Some(&dir) == v2.as_ref()) {
            continue;
        }
        let file = if dir.join("tasks").exists() {
            "tasks"
        } else {
            "cgroup.procs"
        };
        write(&dir.join(file), &pid.to_string())?;
    }
    Ok(())
}
// ANCHOR_END: add

// ANCHOR: remove
/// Removes the cgroup (every version's directory that exists). A cgroup
/// can only be removed when no process is left in it: the container's
/// other processes die with its PID 1, but may take a moment, so any left
/// are killed and the rmdir retried for a while.
pub fn remove(resources: &Resources) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for dir in all_dirs(&resources.cgroup) {
        if !dir.is_dir() {
            continue;
        }
        explain::step(
            "remove the container's cgroup",
            Some(&format!("rmdir {}", dir.display())),
        );
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|p| p.parse().ok())
                    {
                        let _ = nix::sys::signal::kill(
                            Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::new(format!("cgroup: rmdir {}: {e}", dir.display()))),
            }
        }
    }
    Ok(())
}
// ANCHOR_END: remove

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_memory_units() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("10240k").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("8388608").unwrap(), 8 << 20);
        assert_eq!(parse_bytes("8388608b").unwrap(), 8 << 20);
        assert!(parse_bytes("1k").is_err(), "below docker's 6m minimum");
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("12x").is_err());
    }

    #[test]
    fn every_container_gets_a_cgroup() {
        let plain = ResourceArgs::default().parse().unwrap().in_cgroup("abc");
        assert_eq!(plain.cgroup, "crabbox/abc");
        assert_eq!((plain.memory, plain.pids, plain.cpus), (None, None, None));
        let args = ResourceArgs {
            pids_limit: Some(20),
            ..Default::default()
        };
        let r = args.parse().unwrap().in_cgroup("abc");
        assert_eq!(r.cgroup, "crabbox/abc");
        assert_eq!(r.pids, Some(20));
    }

    #[test]
    fn memory_swap_is_dockers() {
        let with = |memory: Option<&str>, swap: Option<&str>| {
            ResourceArgs {
                memory: memory.map(String::from),
                memory_swap: swap.map(String::from),
                ..Default::default()
            }
            .parse()
            .map(|limits| limits.memory_swap)
        };
        assert_eq!(with(Some("16m"), None).unwrap(), Some(32 << 20));
        assert_eq!(with(Some("16m"), Some("-1")).unwrap(), Some(-1));
        assert_eq!(with(Some("16m"), Some("16m")).unwrap(), Some(16 << 20));
        assert!(with(Some("16m"), Some("8m")).is_err());
        assert!(with(None, Some("8m")).is_err());
    }
}
