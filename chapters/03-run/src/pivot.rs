//! `pivot_root`: making the image's tree the container's `/`.
//!
//! `chroot` only changes where path lookups start; the old root is still
//! mounted, reachable by a process with CAP_SYS_CHROOT and a few tricks.
//! `pivot_root` moves the whole mount namespace onto a new root and puts
//! the old root somewhere below it, from where we detach it: after that the
//! host's filesystem is not in this mount namespace at all.
//!
//! Two conditions, both met before we get here:
//! * the new root must be a mount point (our overlay mount is one);
//! * its mount must not be *shared* with another namespace, or the kernel
//!   refuses with EINVAL (systemd makes `/` shared): hence
//!   `mount --make-rprivate /` first, in [`crate::mounts::make_private`].

use ch01_images::explain;
use nix::mount::{umount2, MntFlags};
use std::path::Path;

/// The directory (inside the new root) where the old root is put for a moment.
const OLD_ROOT: &str = ".pivot_root";

// ANCHOR: pivot
/// Makes `new_root` the root of this mount namespace and detaches the old one.
pub fn pivot_root(new_root: &Path) -> Result<(), String> {
    explain::step(
        "make the container's tree the root; the host's root goes to a directory below it",
        Some(&format!(
            "cd {} && mkdir {OLD_ROOT} && pivot_root . {OLD_ROOT}",
            new_root.display()
        )),
    );
    nix::unistd::chdir(new_root).map_err(|e| format!("cd {}: {e}", new_root.display()))?;
    let old = new_root.join(OLD_ROOT);
    match std::fs::create_dir(&old) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("mkdir {}: {e}", old.display())),
    }
    nix::unistd::pivot_root(".", OLD_ROOT).map_err(|e| format!("pivot_root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("cd /: {e}"))?;
    explain::step(
        "detach the host's root: nothing of the host's filesystem is left in this namespace",
        Some(&format!("umount -l /{OLD_ROOT} && rmdir /{OLD_ROOT}")),
    );
    // Lazily (MNT_DETACH): processes of the host still use those mounts;
    // we only remove them from *our* tree.
    let old_in_new = format!("/{OLD_ROOT}");
    umount2(old_in_new.as_str(), MntFlags::MNT_DETACH)
        .map_err(|e| format!("umount -l {old_in_new}: {e}"))?;
    std::fs::remove_dir(&old_in_new).map_err(|e| format!("rmdir {old_in_new}: {e}"))?;
    Ok(())
}
// ANCHOR_END: pivot
