//! The container's mount table: made private, then filled from the spec,
//! then hardened with docker's masked and read-only paths.
//!
//! Everything here runs in the child, inside its new mount namespace, so
//! none of it is visible on the host, and all of it disappears with the
//! namespace when the container's last process exits.

use crate::spec::Mount;
use ch01_images::explain::{self, shell_quote};
use ch02_layers::contain;
use nix::mount::{mount, MsFlags};
use std::path::Path;

// ANCHOR: masked
/// Paths docker hides from containers: they leak host details (kernel
/// memory, keys, timers) or offer dangerous knobs. `/proc/interrupts` and
/// each CPU's `thermal_throttle` counters (see [`masked_paths`]) are the
/// newest (docker 28): interrupt and throttling counts that move with what
/// *other* processes do are a side channel between containers.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Every path to mask on this machine: [`MASKED_PATHS`] and one
/// `thermal_throttle` directory per CPU (as many as the host has).
pub fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = MASKED_PATHS.iter().map(|p| p.to_string()).collect();
    let cpus = std::fs::read_dir("/sys/devices/system/cpu")
        .into_iter()
        .flatten()
        .flatten();
    let mut throttles: Vec<String> = cpus
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| format!("{}/thermal_throttle", e.path().display()))
        .collect();
    throttles.sort();
    paths.extend(throttles);
    paths
}
// ANCHOR_END: masked

/// Paths docker leaves readable but not writable: kernel settings for the
/// whole machine (/proc/sys), the magic SysRq key, interrupts, buses.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ANCHOR: private
/// `mount --make-rprivate /`: from now on, mounts and unmounts here do not
/// propagate to the host, nor the host's to us.
///
/// A new mount namespace starts as a copy of the host's, *including* its
/// propagation settings: on a systemd host `/` is shared, so without this
/// our mounts would appear on the host and `pivot_root` would fail (EINVAL).
pub fn make_private() -> Result<(), String> {
    explain::step(
        "stop mount events flowing between the host and the container",
        Some("mount --make-rprivate /"),
    );
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("mount --make-rprivate /: {e}"))
}
// ANCHOR_END: private

/// Splits mount(8)-style options into kernel flags and filesystem data.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            // Read-only all the way down (see `apply`); `ro` for the top.
            "rro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

// ANCHOR: apply
/// Mounts `m` under `rootfs` (before `pivot_root`, so bind sources are
/// host paths). The mount point is created if missing: a directory, or an
/// empty file when a file is bind-mounted.
pub fn apply(rootfs: &Path, m: &Mount) -> Result<(), String> {
    // The image decides what its paths are: `/etc/hostname` may be a
    // symlink to a host path. Resolve the destination as if `rootfs` were
    // `/` (chapter 2's rule for layers), so a mount never lands outside.
    let parts = contain::entry_components(Path::new(&m.destination)).map_err(|e| e.to_string())?;
    let target = contain::resolve_in_root(rootfs, &parts, true).map_err(|e| e.to_string())?;
    let (flags, data) = parse_options(&m.options);
    let is_bind = flags.contains(MsFlags::MS_BIND);
    let source_is_file = is_bind && Path::new(&m.source).is_file();
    if source_is_file {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        }
        if !target.exists() {
            std::fs::write(&target, b"")
                .map_err(|e| format!("creating {}: {e}", target.display()))?;
        }
    } else {
        std::fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
    }
    let mut shell = String::from("mount");
    if flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC) {
        shell.push_str(" --rbind");
    } else if is_bind {
        shell.push_str(" --bind");
    } else {
        shell.push_str(&format!(" -t {}", m.fstype));
    }
    let shown: Vec<&str> = m
        .options
        .iter()
        .map(String::as_str)
        .filter(|o| !matches!(*o, "bind" | "rbind" | "rro"))
        .collect();
    if !shown.is_empty() {
        shell.push_str(&format!(" -o {}", shown.join(",")));
    }
    shell.push_str(&format!(
        " {} {}",
        shell_quote(&m.source),
        shell_quote(&m.destination)
    ));
    explain::step(
        &format!("mount {} in the container", m.destination),
        Some(&shell),
    );
    let fstype = (!is_bind).then_some(m.fstype.as_str());
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), &target, fstype, flags, data)
        .map_err(|e| format!("{shell}: {e}"))?;
    // A bind mount ignores `ro` and friends on its first call: they take
    // effect on a remount of the bind.
    let extra =
        flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if is_bind && !extra.is_empty() {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
            None::<&str>,
        )
        .map_err(|e| format!("remounting {} read-only: {e}", m.destination))?;
    }
    if m.options.iter().any(|o| o == "rro") {
        recursive_read_only(&target, &m.destination)?;
    }
    Ok(())
}
// ANCHOR_END: apply

// ANCHOR: recursive_read_only
/// The `rro` option (runc's name): the remount above made only the top
/// mount read-only; the submounts a recursive bind brought along stay
/// writable. `mount_setattr(2)` with `AT_RECURSIVE` (Linux 5.12+, what
/// docker 25+ asks runc for) changes the whole tree at once. On an older
/// kernel: a warning, and the top mount alone is read-only.
fn recursive_read_only(target: &Path, destination: &str) -> Result<(), String> {
    /// `struct mount_attr` of <linux/mount.h>.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    explain::step(
        &format!("make {destination} and every mount under it read-only"),
        Some(&format!(
            "mount -o remount,bind,ro {}   # and mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)",
            shell_quote(destination)
        )),
    );
    let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{destination}: a path with a NUL byte"))?;
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOSYS) {
        eprintln!(
            "WARNING: {destination}: this kernel has no mount_setattr (Linux 5.12+): mounts under it stay writable"
        );
        return Ok(());
    }
    Err(format!("making {destination} read-only recursively: {err}"))
}
// ANCHOR_END: recursive_read_only

// ANCHOR: harden
/// After `pivot_root`: hides the masked paths (a file gets /dev/null bound
/// over it, a directory an empty read-only tmpfs) and makes the read-only
/// paths read-only (bound onto themselves, then remounted `ro`). Paths this
/// kernel does not have are skipped.
pub fn mask_and_protect() -> Result<(), String> {
    explain::step(
        &format!(
            "hide {} and each CPU's thermal_throttle",
            MASKED_PATHS.join(" ")
        ),
        Some("mount --bind /dev/null /proc/kcore   # and so on; directories get an empty read-only tmpfs"),
    );
    for path in masked_paths() {
        let path = path.as_str();
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let result = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        result.map_err(|e| format!("masking {path}: {e}"))?;
    }
    explain::step(
        &format!("make {} read-only", READONLY_PATHS.join(" ")),
        Some(
            "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys   # and so on",
        ),
    );
    for path in READONLY_PATHS {
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("binding {path}: {e}"))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        mount(Some(path), path, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("making {path} read-only: {e}"))?;
    }
    Ok(())
}
// ANCHOR_END: harden

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let options: Vec<String> = ["nosuid", "ro", "mode=755", "size=65536k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&options);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(data, "mode=755,size=65536k");
    }
}
