//! Unpacking one layer: a tar stream becomes files, safely and exactly.
//!
//! Two ways to apply a layer, one reader:
//!
//! * [`Mode::Overlay`]: into an empty directory of its own, which becomes
//!   one read-only lower directory of an overlay mount. Whiteouts become
//!   overlayfs whiteouts (a 0:0 character device, the opaque xattr); the
//!   layers below are untouched, overlayfs combines them at mount time.
//! * [`Mode::Flat`]: onto a directory that already holds the layers below,
//!   as the OCI spec's "applying changesets" describes: a whiteout deletes
//!   the path, an opaque marker empties the directory of what the lower
//!   layers had (before this layer's own entries, wherever it sits in the tar).
//!
//! Everything the tar says is kept: owners, modes (setuid included), mtimes,
//! xattrs, hardlinks, symlinks, device nodes. Every path goes through
//! [`crate::contain`], so nothing lands outside the directory.
//!
//! Fast where it is free: each entry is created first and asked about only
//! if that fails (a name already taken is the exception, not the rule), its
//! parent directory is usually one the [`Resolver`] already knows, and file
//! contents are written in large pieces. A layer of 5,000 files then costs
//! the kernel about what `tar -x` costs it.

use crate::contain::{entry_components, Resolver};
use crate::whiteout::{classify, Marker, OVERLAY_OPAQUE_XATTR};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Overlay,
    Flat,
}

/// What applying one layer did, counted (shown by `layers` and `--explain`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

/// File contents are copied through a buffer this large.
const COPY_BUFFER: usize = 1 << 20;

// ANCHOR: apply_layer
/// Applies one uncompressed layer tar to `root`. (To unpack a layer blob of
/// the store, [`crate::pipeline::apply_layer_blob`] decompresses it in a
/// second thread and feeds it to this function.)
pub fn apply_layer(tar_stream: impl Read, root: &Path, mode: Mode) -> Result<Applied> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut applied = Applied::default();
    // Every path is resolved inside `root`; it remembers the directories
    // it has seen, and forgets them when this unpack removes them.
    let mut resolver = Resolver::new(root);
    // What this layer wrote: its own whiteouts never hide it.
    let mut written = Written::default();
    // Directory times are set last: adding a child changes them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    // File contents go through this buffer: one write per MiB, not per 8 KiB.
    let mut buffer = vec![0u8; COPY_BUFFER];
    let entries = archive.entries().map_err(|e| bad_tar(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_tar(&e))?;
        let name = entry.path().map_err(|e| bad_tar(&e))?.into_owned();
        let parts = entry_components(&name)?;
        let Some(file_name) = parts.last().map(|p| p.to_string_lossy().into_owned()) else {
            continue; // the entry for "./" itself
        };
        let parent = resolver.resolve(&parts[..parts.len() - 1], true)?;
        match classify(&file_name)? {
            Marker::AufsMeta => continue,
            Marker::Whiteout(victim) => {
                applied.whiteouts += 1;
                let victim_path = parent.join(victim);
                // A whiteout hides the layers below, never this layer's own
                // entries: what this layer wrote at or under the name stays.
                let own_file = written.wrote(&victim_path)
                    && !victim_path.symlink_metadata().is_ok_and(|m| m.is_dir());
                let own_entries_inside = written.wrote_inside(&victim_path);
                match mode {
                    _ if own_file => {}
                    // The directory stays for this layer's entries, hiding the lower ones.
                    Mode::Overlay if own_entries_inside => {
                        set_xattr(&victim_path, OVERLAY_OPAQUE_XATTR, b"y")?
                    }
                    Mode::Flat if own_entries_inside => {
                        remove_lower_entries(&victim_path, &written, &mut resolver)?
                    }
                    Mode::Overlay => {
                        resolver.make_dirs(&parent)?;
                        make_overlay_whiteout(&victim_path, &mut resolver)?
                    }
                    Mode::Flat => remove_entry(&victim_path, &mut resolver)?,
                }
                continue;
            }
            Marker::Opaque => {
                applied.opaque_dirs += 1;
                resolver.make_dirs(&parent)?;
                match mode {
                    Mode::Overlay => set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y")?,
                    Mode::Flat => remove_lower_entries(&parent, &written, &mut resolver)?,
                }
                explain::step(
                    &format!(
                        "opaque directory {}: hide what the lower layers had there",
                        name.display()
                    ),
                    (mode == Mode::Overlay)
                        .then(|| {
                            format!(
                                "setfattr -n {OVERLAY_OPAQUE_XATTR} -v y {}",
                                parent.display()
                            )
                        })
                        .as_deref(),
                );
                continue;
            }
            Marker::None => {}
        }
        resolver.make_dirs(&parent)?;
        let path = parent.join(&file_name);
        write_entry(
            &mut entry,
            &mut resolver,
            &path,
            &mut dir_times,
            &mut buffer,
        )?;
        written.insert(path);
        applied.entries += 1;
    }
    // Drain the end of the stream, so a caller hashing it sees every byte.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| bad_tar(&e))?;
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime)?;
    }
    Ok(applied)
}
// ANCHOR_END: apply_layer

// ANCHOR: write_entry
/// Creates one file, directory, link or device, then gives it the owner,
/// mode, xattrs and mtime the tar says.
fn write_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    resolver: &mut Resolver,
    path: &Path,
    dir_times: &mut Vec<(PathBuf, i64)>,
    buffer: &mut [u8],
) -> Result<()> {
    let header = entry.header().clone();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| bad_tar(&e))?;
    let mtime = header.mtime().map_err(|e| bad_tar(&e))? as i64;
    // Whatever is at this name already (in a lower layer of a flat unpack,
    // or an earlier entry) is replaced, except a directory by a directory,
    // which keeps its contents and takes the new attributes. Each kind is
    // created first; only when the name is taken do we look and replace
    // (`replacing`). None of these calls follows a symlink at the name.
    match kind {
        tar::EntryType::Directory => {
            match fs::create_dir(path) {
                Ok(()) => {}
                // A directory over a directory: it stays, with its contents.
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && path.symlink_metadata().is_ok_and(|m| m.is_dir()) => {}
                // Anything else at the name goes (or the error is reported).
                Err(_) => replacing(path, resolver, "creating", || fs::create_dir(path))?,
            }
            resolver.made_dir(path);
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mut file = replacing(path, resolver, "creating", || {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true) // never through a symlink planted at this name
                    .open(path)
            })?;
            copy_contents(entry, &mut file, buffer).map_err(|e| io_err("writing", path, e))?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| bad_tar(&e))?
                .ok_or_else(|| Error::new("invalid layer: a symlink without a target"))?;
            // A symlink's *target* may point anywhere: it is only followed
            // later, inside the container, or by the resolver here.
            replacing(path, resolver, "creating symlink", || {
                symlink(&target, path)
            })?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| bad_tar(&e))?
                .ok_or_else(|| Error::new("invalid layer: a hardlink without a target"))?;
            let parts = entry_components(&target)?;
            let source = resolver.resolve(&parts, false)?;
            // The source must already be a file of this layer (or of the
            // ones below), and not the name the link is about to take.
            if source == path || !source.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                return Err(Error::new(format!(
                    "invalid layer: hardlink {} points to {}, which is not a file of this layer",
                    path.display(),
                    target.display()
                )));
            }
            replacing(path, resolver, "creating hardlink", || {
                fs::hard_link(&source, path)
            })?;
            return Ok(()); // a hardlink shares its target's inode and attributes
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let file_type = match kind {
                tar::EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                tar::EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                _ => nix::sys::stat::SFlag::S_IFIFO,
            };
            replacing(path, resolver, "creating device", || {
                nix::sys::stat::mknod(
                    path,
                    file_type,
                    nix::sys::stat::Mode::from_bits_truncate(mode),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(io::Error::from)
            })?;
        }
        other => {
            remove_entry(path, resolver)?; // replaced by nothing
            explain::step(
                &format!("skipping {} (tar entry type {other:?})", path.display()),
                None,
            );
            return Ok(());
        }
    }
    // Owner first: chown clears setuid/setgid, so the mode comes after.
    if running_as_root() {
        let uid = header.uid().map_err(|e| bad_tar(&e))? as u32;
        let gid = header.gid().map_err(|e| bad_tar(&e))? as u32;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| io_err("changing owner of", path, e))?;
    }
    if kind != tar::EntryType::Symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| io_err("setting mode of", path, e))?;
    }
    if let Some(extensions) = entry.pax_extensions().map_err(|e| bad_tar(&e))? {
        for extension in extensions.flatten() {
            if let Some(name) = extension
                .key()
                .ok()
                .and_then(|k| k.strip_prefix("SCHILY.xattr."))
            {
                set_xattr(path, name, extension.value_bytes())?;
            }
        }
    }
    if kind.is_dir() {
        dir_times.push((path.to_path_buf(), mtime));
    } else {
        set_mtime(path, mtime)?;
    }
    Ok(())
}
// ANCHOR_END: write_entry

/// Runs `create`; if the name is taken, removes what has it and tries once
/// more. Asking first ("is something there?") would cost a system call for
/// every entry; in a layer, the name is almost always free.
fn replacing<T>(
    path: &Path,
    resolver: &mut Resolver,
    action: &str,
    create: impl Fn() -> io::Result<T>,
) -> Result<T> {
    let result = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_entry(path, resolver)?;
            create()
        }
        other => other,
    };
    result.map_err(|e| io_err(action, path, e))
}

/// Copies an entry's contents in pieces as large as `buffer`: the tar
/// reader hands out a few KiB at a time, and each write is a system call.
fn copy_contents(from: &mut impl Read, to: &mut fs::File, buffer: &mut [u8]) -> io::Result<()> {
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            match from.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..filled])?;
    }
}

/// What a layer wrote so far: its entries, and every directory holding one
/// of them (made by an entry or implicitly), for constant-time questions.
#[derive(Default)]
struct Written {
    paths: HashSet<PathBuf>,
    holders: HashSet<PathBuf>,
}

impl Written {
    fn insert(&mut self, path: PathBuf) {
        for ancestor in path.ancestors().skip(1) {
            if !self.holders.insert(ancestor.to_path_buf()) {
                break; // its ancestors are recorded already
            }
        }
        self.paths.insert(path);
    }

    /// Did this layer write an entry at exactly this path?
    fn wrote(&self, path: &Path) -> bool {
        self.paths.contains(path)
    }

    /// Did this layer write anything below this directory?
    fn wrote_inside(&self, dir: &Path) -> bool {
        self.holders.contains(dir)
    }
}

/// Empties `dir` of what the lower layers put there, keeping what this layer
/// already wrote (the opaque marker may come after the layer's own entries).
fn remove_lower_entries(dir: &Path, written: &Written, resolver: &mut Resolver) -> Result<()> {
    for child in fs::read_dir(dir)
        .map_err(|e| io_err("reading", dir, e))?
        .flatten()
    {
        let path = child.path();
        // Kept: what this layer wrote, and the directories it wrote into
        // (even those it made implicitly, with no entry of their own).
        if !written.wrote(&path) && !written.wrote_inside(&path) {
            remove_entry(&path, resolver)?;
        } else if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            remove_lower_entries(&path, written, resolver)?;
        }
    }
    Ok(())
}

/// Owners can only be given by root; asked once per process.
fn running_as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| nix::unistd::geteuid().is_root())
}

/// An overlayfs whiteout: a character device with device number 0:0.
fn make_overlay_whiteout(path: &Path, resolver: &mut Resolver) -> Result<()> {
    remove_entry(path, resolver)?;
    explain::step(
        &format!(
            "whiteout {}: a 0:0 character device hides it from the layers below",
            path.display()
        ),
        Some(&format!("mknod {} c 0 0", path.display())),
    );
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .map_err(|e| io_err("creating whiteout", path, e.into()))
    .map_err(|e| Error::new(format!("{} (overlay whiteouts need root)", e.message())))
}

/// Removes what the unpack found at `path`, and makes the resolver forget it
/// (every removal of an unpack goes through here: see [`Resolver::forget`]).
fn remove_entry(path: &Path, resolver: &mut Resolver) -> Result<()> {
    resolver.forget(path);
    remove_any(path)
}

/// Removes a file, symlink or whole directory tree; absent is fine.
pub fn remove_any(path: &Path) -> Result<()> {
    let result = match path.symlink_metadata() {
        Err(_) => return Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(|e| io_err("removing", path, e))
}

/// Sets an extended attribute on the path itself (never a symlink's target).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new("a path with a NUL byte"))?;
    let c_name = CString::new(name).map_err(|_| Error::new("an xattr name with a NUL byte"))?;
    // SAFETY: both strings are NUL-terminated and live across the call.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(Error::new(format!(
            "setting xattr {name} on {}: {err}",
            path.display()
        )));
    }
    Ok(())
}

/// Reads an extended attribute of the path itself, if it has it.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let c_name = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: the buffer is as long as we say; both strings are NUL-terminated.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn set_mtime(path: &Path, mtime: i64) -> Result<()> {
    let time = nix::sys::time::TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err("setting the time of", path, e.into()))
}

fn bad_tar(e: &io::Error) -> Error {
    Error::new(format!(
        "invalid layer: the tar stream is damaged or truncated ({e})"
    ))
}

fn io_err(action: &str, path: &Path, e: io::Error) -> Error {
    ch01_images::error::io_error(action, path, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from (name, kind, contents or link target) entries.
    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_mtime(1_700_000_000);
            header.set_uid(0);
            header.set_gid(0);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_size(0);
                builder.append_link(&mut header, name, data).unwrap();
            } else {
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, name, data.as_bytes())
                    .unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    /// A scratch directory with `layer/` (the unpack's root) and, beside
    /// it, `outside/b/` (where a stale directory cache would write).
    fn sandbox(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crabbox-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("layer")).unwrap();
        fs::create_dir_all(dir.join("outside/b")).unwrap();
        dir
    }

    use tar::EntryType::{Directory as D, Regular as F, Symlink as S};

    #[test]
    fn a_directory_replaced_by_a_symlink_later_in_the_layer_is_not_trusted() {
        for mode in [Mode::Flat, Mode::Overlay] {
            let sandbox = sandbox("dir-then-symlink");
            let (root, outside) = (sandbox.join("layer"), sandbox.join("outside"));
            let out = outside.to_str().unwrap();
            // `a` and `a/b` are directories the unpack makes, and knows;
            // then `a` becomes a symlink out, and `a/b/x` comes through it.
            let tar = layer(&[
                ("a", D, ""),
                ("a/b", D, ""),
                ("a/b/f", F, "f"),
                ("a", S, out),
                ("a/b/x", F, "x"),
                ("c", D, ""),
                ("c", S, "/"),
                ("c/y", F, "y"),
            ]);
            apply_layer(&tar[..], &root, mode).unwrap();
            assert!(!outside.join("b/x").exists(), "{mode:?}: wrote outside");
            let inside = root.join(outside.strip_prefix("/").unwrap());
            assert_eq!(fs::read(inside.join("b/x")).unwrap(), b"x", "{mode:?}");
            assert!(root.join("a").symlink_metadata().unwrap().is_symlink());
            assert_eq!(fs::read(root.join("y")).unwrap(), b"y", "{mode:?}");
            fs::remove_dir_all(&sandbox).unwrap();
        }
    }

    #[test]
    fn a_lower_directory_emptied_by_an_opaque_marker_is_not_trusted() {
        let sandbox = sandbox("opaque-then-symlink");
        let (root, outside) = (sandbox.join("layer"), sandbox.join("outside"));
        let out = outside.to_str().unwrap();
        let lower = layer(&[("a/c/b/f", F, "lower")]);
        apply_layer(&lower[..], &root, Mode::Flat).unwrap();
        // The hardlink makes the resolver look at (and know) `a/c` and
        // `a/c/b`; the opaque marker then removes them (lower entries), and
        // `a/c` comes back as a symlink out.
        let upper = layer(&[
            ("h", tar::EntryType::Link, "a/c/b/f"),
            ("a/.wh..wh..opq", F, ""),
            ("a/c", S, out),
            ("a/c/b/x", F, "x"),
        ]);
        apply_layer(&upper[..], &root, Mode::Flat).unwrap();
        assert!(!outside.join("b/x").exists(), "wrote outside");
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert_eq!(fs::read(inside.join("b/x")).unwrap(), b"x");
        assert_eq!(fs::read(root.join("h")).unwrap(), b"lower");
        fs::remove_dir_all(&sandbox).unwrap();
    }
}
