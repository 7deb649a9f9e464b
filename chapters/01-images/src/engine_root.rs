//! The engine root: one directory holds every image, layer and container,
//! and only root may enter it.
//!
//! Why it matters: an image's layers may carry device nodes (a disk's
//! `/dev/sda`, mode 0666: images need device nodes, so we keep them) and
//! setuid-root programs. Unpacked under `ROOT/layers/…`, they are real
//! files of the host. If any user of the machine could walk into the
//! engine root, pulling a hostile image would hand every one of them the
//! host's disk (open the 0666 node, read and write it) or a root shell (run
//! the setuid copy of `sh`). Docker closes that door the same way:
//! `/var/lib/docker` is 0710 and its `overlay2/` directories 0700.
//!
//! So the engine root is made 0700, and an existing one that others may
//! enter is tightened (with a word on stderr, since it changes the
//! machine). Everything under it is then out of reach of other users,
//! whatever its own mode: a path is only reachable if every directory on
//! the way may be searched. Containers are not affected: they see their
//! root filesystem through a mount, not through this path.

use crate::error::{Error, IoContext, Result};
use crate::explain;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The engine root's mode: owner (root) only.
pub const MODE: u32 = 0o700;

/// The engine root must be a directory, or not exist yet (it is made on
/// first use). A file there would otherwise make `ps` and `prune`
/// silently find nothing, and other commands fail each their own way.
pub fn check(root: &Path) -> Result<()> {
    let not_a_directory = match fs::metadata(root) {
        Ok(meta) => !meta.is_dir(),
        // A component of the path is a file (`--root /etc/passwd/x`).
        Err(e) => e.raw_os_error() == Some(libc::ENOTDIR),
    };
    if not_a_directory {
        return Err(Error::new(format!(
            "--root {}: not a directory — give a directory for the engine's state",
            root.display()
        )));
    }
    Ok(())
}

// ANCHOR: prepare
/// Creates the engine root (0700) if missing; an existing one that group
/// or others may enter is tightened to 0700.
pub fn prepare(root: &Path) -> Result<()> {
    check(root)?;
    match fs::metadata(root) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                explain::step(
                    "other users must not reach the engine root (image layers may hold device nodes and setuid programs)",
                    Some(&format!("chmod 700 {}", root.display())),
                );
                fs::set_permissions(root, fs::Permissions::from_mode(MODE))
                    .context("tightening the permissions of", root)?;
                eprintln!(
                    "note: {} was mode {mode:04o}, reachable by other users of this machine; it is now {MODE:04o}",
                    root.display()
                );
            }
            Ok(())
        }
        Err(_) => {
            if let Some(parent) = root.parent() {
                fs::create_dir_all(parent).context("creating", parent)?;
            }
            explain::step(
                "create the engine root, reachable by root alone",
                Some(&format!("mkdir -m 700 {}", root.display())),
            );
            match fs::create_dir(root) {
                Ok(()) => {}
                // Another command made it in the meantime: check it as above.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return prepare(root),
                Err(e) => return Err(e).context("creating", root),
            }
            // mkdir's mode is filtered by the umask: set it exactly.
            fs::set_permissions(root, fs::Permissions::from_mode(MODE))
                .context("setting the permissions of", root)
        }
    }
}
// ANCHOR_END: prepare

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_root_is_private_and_an_open_one_is_tightened() {
        let base = std::env::temp_dir().join(format!("crabbox-root-test-{}", std::process::id()));
        let root = base.join("nested").join("root");
        prepare(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o700);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        let file = base.join("file");
        fs::write(&file, b"").unwrap();
        assert!(prepare(&file)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        fs::remove_dir_all(&base).unwrap();
    }
}
