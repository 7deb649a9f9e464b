//! A minimal /dev: the few device files every program expects, and none of
//! the host's disks, consoles or other hardware.
//!
//! `/dev` is a fresh tmpfs (one of the spec's default mounts). In it we
//! create the device nodes docker creates, with `mknod` (a device file is
//! just a name for a (major, minor) pair the kernel knows), plus the usual
//! symlinks: /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr, /dev/ptmx.

use ch01_images::explain;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
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
