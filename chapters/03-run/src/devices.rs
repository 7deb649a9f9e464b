//! A minimal /dev: the few device files every program expects, and none of
//! the host's disks, consoles or other hardware.
//!
//! `/dev` is a fresh tmpfs (one of the spec's default mounts). In it we
//! create the device nodes docker creates, with `mknod` (a device file is
//! just a name for a (major, minor) pair the kernel knows), plus the usual
//! symlinks: /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr, /dev/ptmx.
//! A `--device` adds one host device (see [`add_given`]). Making a node is
//! not the same as being allowed to use it: the devices cgroup decides
//! that (see `device_cgroup`).

use crate::security::DeviceMapping;
use ch01_images::explain;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// name, major, minor: the character devices docker gives every container.
pub const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks of a normal /dev.
pub const LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

// ANCHOR: devices
/// Creates the device nodes and links in `dev` (the container's /dev,
/// already a tmpfs).
pub fn populate(dev: &Path) -> Result<(), String> {
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        explain::step(
            &format!("create /dev/{name}"),
            Some(&format!(
                "mknod -m 666 {} c {major} {minor}",
                path.display()
            )),
        );
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| format!("mknod {}: {e}", path.display()))?;
        // mknod's mode is filtered by the umask: set it exactly.
        nix::sys::stat::fchmodat(
            None,
            &path,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    for (name, target) in LINKS {
        let path = dev.join(name);
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| format!("ln -s {target} {}: {e}", path.display()))?;
    }
    Ok(())
}
// ANCHOR_END: devices

// ANCHOR: given
/// Creates each `--device` in `dev` (the container's /dev, a tmpfs of
/// ours: nothing of the image is in it) with the type and numbers read at
/// `create`, and the mode and owner the host's node has now (docker's
/// way; 0660 root if it is gone). Runs in the container's mount namespace
/// before `pivot_root`, where the host's /dev is still in sight.
pub fn add_given(dev: &Path, devices: &[DeviceMapping]) -> Result<(), String> {
    for device in devices {
        let relative = device
            .container
            .strip_prefix("/dev/")
            .ok_or_else(|| format!("--device {}: not under /dev", device.container))?;
        let path = dev.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("mkdir -p {}: {e}", parent.display()))?;
            // Through one of /dev's symlinks (/dev/fd/…), it would land
            // outside the container's /dev.
            let inside = parent
                .canonicalize()
                .ok()
                .zip(dev.canonicalize().ok())
                .is_some_and(|(p, d)| p.starts_with(d));
            if !inside {
                return Err(format!(
                    "--device {}: the path leads out of the container's /dev",
                    device.container
                ));
            }
        }
        let host = std::fs::metadata(&device.host).ok();
        let mode = host.as_ref().map_or(0o660, |m| m.mode() & 0o7777);
        let (uid, gid) = host.as_ref().map_or((0, 0), |m| (m.uid(), m.gid()));
        let (flag, letter) = if device.kind == 'b' {
            (SFlag::S_IFBLK, 'b')
        } else {
            (SFlag::S_IFCHR, 'c')
        };
        explain::step(
            &format!(
                "--device: create {} for the host's {}",
                device.container, device.host
            ),
            Some(&format!(
                "mknod -m {mode:o} {} {letter} {} {}",
                path.display(),
                device.major,
                device.minor
            )),
        );
        // A default node of the same name (--device /dev/tty) gives way.
        if path.symlink_metadata().is_ok() {
            std::fs::remove_file(&path).map_err(|e| format!("rm {}: {e}", path.display()))?;
        }
        mknod(
            &path,
            flag,
            Mode::from_bits_truncate(mode),
            makedev(device.major, device.minor),
        )
        .map_err(|e| format!("mknod {}: {e}", path.display()))?;
        nix::sys::stat::fchmodat(
            None,
            &path,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
}
// ANCHOR_END: given
