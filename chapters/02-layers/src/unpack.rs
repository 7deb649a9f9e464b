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

use crate::contain::{entry_components, resolve_in_root};
use crate::whiteout::{classify, Marker, OVERLAY_OPAQUE_XATTR};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
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

// ANCHOR: apply_layer
/// Applies one uncompressed layer tar to `root`.
pub fn apply_layer(tar_stream: impl Read, root: &Path, mode: Mode) -> Result<Applied> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut applied = Applied::default();
    // What this layer wrote: its own whiteouts never hide it.
    let mut written = Written::default();
    // Directory times are set last: adding a child changes them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(|e| bad_tar(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_tar(&e))?;
        let name = entry.path().map_err(|e| bad_tar(&e))?.into_owned();
        let parts = entry_components(&name)?;
        let Some(file_name) = parts.last().map(|p| p.to_string_lossy().into_owned()) else {
            continue; // the entry for "./" itself
        };
        let parent = resolve_in_root(root, &parts[..parts.len() - 1], true)?;
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
                        remove_lower_entries(&victim_path, &written)?
                    }
                    Mode::Overlay => {
                        fs::create_dir_all(&parent).map_err(|e| io_err("creating", &parent, e))?;
                        make_overlay_whiteout(&victim_path)?
                    }
                    Mode::Flat => remove_any(&victim_path)?,
                }
                continue;
            }
            Marker::Opaque => {
                applied.opaque_dirs += 1;
                fs::create_dir_all(&parent).map_err(|e| io_err("creating", &parent, e))?;
                match mode {
                    Mode::Overlay => set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y")?,
                    Mode::Flat => remove_lower_entries(&parent, &written)?,
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
        fs::create_dir_all(&parent).map_err(|e| io_err("creating", &parent, e))?;
        let path = parent.join(&file_name);
        write_entry(&mut entry, root, &path, &mut dir_times)?;
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
    root: &Path,
    path: &Path,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> Result<()> {
    let header = entry.header().clone();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| bad_tar(&e))?;
    let mtime = header.mtime().map_err(|e| bad_tar(&e))? as i64;
    // Whatever was at this name (in a lower layer of a flat unpack, or an
    // earlier entry) is replaced, except a directory by a directory, which
    // keeps its contents and takes the new attributes.
    let existing = path.symlink_metadata().ok();
    if let Some(meta) = &existing {
        if !(kind.is_dir() && meta.is_dir()) {
            remove_any(path)?;
        }
    }
    match kind {
        tar::EntryType::Directory => {
            if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                fs::create_dir(path).map_err(|e| io_err("creating", path, e))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true) // never through a symlink planted at this name
                .open(path)
                .map_err(|e| io_err("creating", path, e))?;
            io::copy(entry, &mut file).map_err(|e| io_err("writing", path, e))?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| bad_tar(&e))?
                .ok_or_else(|| Error::new("invalid layer: a symlink without a target"))?;
            // A symlink's *target* may point anywhere: it is only followed
            // later, inside the container, or by resolve_in_root here.
            symlink(&target, path).map_err(|e| io_err("creating symlink", path, e))?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| bad_tar(&e))?
                .ok_or_else(|| Error::new("invalid layer: a hardlink without a target"))?;
            let parts = entry_components(&target)?;
            let source = resolve_in_root(root, &parts, false)?;
            if !source.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                return Err(Error::new(format!(
                    "invalid layer: hardlink {} points to {}, which is not a file of this layer",
                    path.display(),
                    target.display()
                )));
            }
            fs::hard_link(&source, path).map_err(|e| io_err("creating hardlink", path, e))?;
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
            nix::sys::stat::mknod(
                path,
                file_type,
                nix::sys::stat::Mode::from_bits_truncate(mode),
                nix::sys::stat::makedev(major.into(), minor.into()),
            )
            .map_err(|e| io_err("creating device", path, e.into()))?;
        }
        other => {
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
fn remove_lower_entries(dir: &Path, written: &Written) -> Result<()> {
    for child in fs::read_dir(dir)
        .map_err(|e| io_err("reading", dir, e))?
        .flatten()
    {
        let path = child.path();
        // Kept: what this layer wrote, and the directories it wrote into
        // (even those it made implicitly, with no entry of their own).
        if !written.wrote(&path) && !written.wrote_inside(&path) {
            remove_any(&path)?;
        } else if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            remove_lower_entries(&path, written)?;
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
fn make_overlay_whiteout(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        remove_any(path)?;
    }
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
