//! Keeping every write of a layer inside its directory.
//!
//! A layer tar comes from somebody else, and a tar entry can say anything:
//! `../../etc/passwd`, `/etc/passwd`, or `evil/x` where an earlier entry
//! made `evil` a symlink to `/`. Extracting naively would write outside the
//! layer directory, onto the host. The rule here is the kernel's own rule
//! for a process whose root is the layer directory: paths are resolved
//! **as if the layer directory were `/`**. Symlinks are followed, but `..`
//! at the top stays at the top and an absolute target starts again at the
//! top, so no path can leave. Entry names that say `..` are refused
//! outright: a well-formed layer never needs them.

use ch01_images::error::{Error, Result};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before we call it a loop (Linux: 40).
const MAX_SYMLINKS: usize = 40;

/// The components of a tar entry name, refusing `..` and dropping `/` and `.`.
pub fn entry_components(name: &Path) -> Result<Vec<OsString>> {
    let mut parts = Vec::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::new(format!(
                    "invalid layer: the entry {} climbs out with '..'",
                    name.display()
                )))
            }
            Component::Prefix(_) => unreachable!("no prefixes on Unix"),
        }
    }
    Ok(parts)
}

// ANCHOR: resolve
/// Resolves `parts` under `root` as the kernel would inside a chroot at
/// `root`: every symlink met on the way is followed, but stays inside.
/// The last component is followed only if `follow_last` is set (an entry
/// *replaces* a symlink at its own name; it never writes through it).
pub fn resolve_in_root(root: &Path, parts: &[OsString], follow_last: bool) -> Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = parts.iter().rev().cloned().collect();
    let mut followed = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop(); // at the top, `..` is the top itself
            continue;
        }
        if part == "." || part.is_empty() {
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        let is_last = pending.is_empty();
        let is_symlink = candidate
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if is_symlink && (!is_last || follow_last) {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(Error::new(format!(
                    "too many levels of symlinks under {}",
                    root.display()
                )));
            }
            let target = std::fs::read_link(&candidate)
                .map_err(|e| Error::new(format!("reading symlink {}: {e}", candidate.display())))?;
            if target.is_absolute() {
                resolved.clear(); // an absolute target starts again at the layer's top
            }
            for component in target.components().rev() {
                match component {
                    Component::Normal(p) => pending.push(p.to_os_string()),
                    Component::ParentDir => pending.push("..".into()),
                    _ => {}
                }
            }
        } else {
            resolved.push(part);
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}
// ANCHOR_END: resolve

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let root = std::env::temp_dir().join(format!("crabbox-contain-{}", std::process::id()));
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/", root.join("up")).unwrap();
        symlink("../../../../..", root.join("usr/dots")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        let parts = |s: &str| entry_components(Path::new(s)).unwrap();
        assert_eq!(
            resolve_in_root(&root, &parts("up/etc/passwd"), false).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, &parts("usr/dots/etc/x"), false).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            resolve_in_root(&root, &parts("lib/libc.so"), false).unwrap(),
            root.join("usr/lib/libc.so")
        );
        // The last component is the entry itself: not followed.
        assert_eq!(
            resolve_in_root(&root, &parts("lib"), false).unwrap(),
            root.join("lib")
        );
        assert!(entry_components(Path::new("a/../../x")).is_err());
        assert_eq!(
            entry_components(Path::new("/etc/./x")).unwrap(),
            vec![OsString::from("etc"), OsString::from("x")]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
