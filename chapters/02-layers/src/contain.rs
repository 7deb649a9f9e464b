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
//!
//! Checking every component of every entry costs one `lstat` each: a layer
//! of 5,000 files five directories deep asks the kernel 30,000 times about
//! directories it has just made. A [`Resolver`] remembers the directories
//! it has already seen to be real directories during one unpack, and asks
//! again only about the others. The unpack tells it whenever it removes or
//! replaces something ([`Resolver::forget`]): a directory seen a moment ago
//! may be a symlink to `/` by the next entry.

use ch01_images::error::{Error, Result};
use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
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

/// Resolves `parts` under `root` as the kernel would inside a chroot at
/// `root` (see [`Resolver::resolve`]), remembering nothing: for one path.
pub fn resolve_in_root(root: &Path, parts: &[OsString], follow_last: bool) -> Result<PathBuf> {
    Resolver::new(root).resolve(parts, follow_last)
}

/// Resolves the paths of one unpack under its root, remembering the
/// directories it has seen.
pub struct Resolver {
    root: PathBuf,
    /// Paths under `root` that are real directories (not symlinks), as are
    /// all their ancestors: seen by this resolver, and not removed or
    /// replaced since (the unpack says so through [`Resolver::forget`]).
    known_dirs: HashSet<PathBuf>,
}

impl Resolver {
    pub fn new(root: &Path) -> Resolver {
        Resolver {
            root: root.to_path_buf(),
            known_dirs: HashSet::new(),
        }
    }

    // ANCHOR: resolve
    /// Resolves `parts` under the root as the kernel would inside a chroot
    /// at the root: every symlink met on the way is followed, but stays
    /// inside. The last component is followed only if `follow_last` is set
    /// (an entry *replaces* a symlink at its own name; it never writes
    /// through it).
    pub fn resolve(&mut self, parts: &[OsString], follow_last: bool) -> Result<PathBuf> {
        let mut resolved = self.root.clone();
        let mut depth = 0; // components of `resolved` below the root
        let mut pending: Vec<OsString> = parts.iter().rev().cloned().collect();
        let mut followed = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if depth > 0 {
                    resolved.pop(); // at the top, `..` is the top itself
                    depth -= 1;
                }
                continue;
            }
            if part == "." || part.is_empty() {
                continue;
            }
            resolved.push(&part);
            depth += 1;
            // A directory seen earlier in this unpack: no symlink here, no
            // need to ask the kernel again.
            if self.known_dirs.contains(&resolved) {
                continue;
            }
            let is_last = pending.is_empty();
            let meta = resolved.symlink_metadata();
            if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                // Its parent is the root or a known directory: the rule of
                // `known_dirs` holds.
                self.known_dirs.insert(resolved.clone());
                continue;
            }
            let is_symlink = meta.is_ok_and(|m| m.file_type().is_symlink());
            if is_symlink && (!is_last || follow_last) {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(Error::new(format!(
                        "too many levels of symlinks under {}",
                        self.root.display()
                    )));
                }
                let target = std::fs::read_link(&resolved).map_err(|e| {
                    Error::new(format!("reading symlink {}: {e}", resolved.display()))
                })?;
                // The symlink itself is not part of the result: its target is.
                resolved.pop();
                depth -= 1;
                if target.is_absolute() {
                    // An absolute target starts again at the layer's top.
                    resolved = self.root.clone();
                    depth = 0;
                }
                for component in target.components().rev() {
                    match component {
                        Component::Normal(p) => pending.push(p.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
        }
        Ok(resolved)
    }
    // ANCHOR_END: resolve

    // ANCHOR: make_dirs
    /// Makes sure `dir`, a path [`Resolver::resolve`] returned (following
    /// its last component), is a directory: like `mkdir -p`, it makes the
    /// missing ones. A known directory costs no system call at all.
    pub fn make_dirs(&mut self, dir: &Path) -> Result<()> {
        if !dir.starts_with(&self.root) {
            return Err(Error::new(format!(
                "{} is not under {}",
                dir.display(),
                self.root.display()
            )));
        }
        // The ancestors not known yet, nearest first; then made (or checked)
        // from the top down, so each one's parent is known when it is.
        let mut unknown = Vec::new();
        let mut ancestor = dir;
        while ancestor != self.root && !self.known_dirs.contains(ancestor) {
            unknown.push(ancestor);
            ancestor = ancestor
                .parent()
                .expect("a path under the root has a parent");
        }
        for dir in unknown.into_iter().rev() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                // Already there: fine if it is a real directory (resolve
                // followed any symlink; a file is an error, as for mkdir -p).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                        return Err(ch01_images::error::io_error("creating", dir, e));
                    }
                }
                Err(e) => return Err(ch01_images::error::io_error("creating", dir, e)),
            }
            self.known_dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }
    // ANCHOR_END: make_dirs

    /// Records that the unpack itself just made `dir` a real directory
    /// (a directory entry); its parent must be the root or a known directory.
    pub fn made_dir(&mut self, dir: &Path) {
        if dir
            .parent()
            .is_some_and(|p| p == self.root || self.known_dirs.contains(p))
        {
            self.known_dirs.insert(dir.to_path_buf());
        }
    }

    // ANCHOR: forget
    /// Forgets `path` and everything under it: the unpack is about to remove
    /// or replace it, and whatever comes there next (a symlink to `/`?) must
    /// be looked at again.
    pub fn forget(&mut self, path: &Path) {
        // Only a known directory can have known directories under it.
        if self.known_dirs.remove(path) {
            self.known_dirs.retain(|known| !known.starts_with(path));
        }
    }
    // ANCHOR_END: forget
}

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

    #[test]
    fn a_forgotten_directory_is_looked_at_again() {
        let root = std::env::temp_dir().join(format!("crabbox-forget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let parts = |s: &str| entry_components(Path::new(s)).unwrap();
        let mut resolver = Resolver::new(&root);
        resolver.make_dirs(&root.join("a/b")).unwrap();
        assert_eq!(
            resolver.resolve(&parts("a/b/x"), true).unwrap(),
            root.join("a/b/x")
        );
        // `a` becomes a symlink to `/`, as a later entry of a layer may make it.
        resolver.forget(&root.join("a"));
        std::fs::remove_dir_all(root.join("a")).unwrap();
        symlink("/", root.join("a")).unwrap();
        assert_eq!(
            resolver.resolve(&parts("a/b/x"), true).unwrap(),
            root.join("b/x")
        );
        assert!(resolver.make_dirs(Path::new("/tmp")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
