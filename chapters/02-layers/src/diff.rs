//! Diff: turning a container's upper directory back into a layer.
//!
//! Everything a container (or a build step) changed is in its overlay upper
//! directory, in overlayfs's own notation. Written out as a tar in the OCI
//! notation, it *is* a new layer: new and changed files as they are, an
//! overlay whiteout (0:0 character device) as a `.wh.NAME` entry, an opaque
//! directory as the directory plus `.wh..wh..opq`. Chapter 5 builds images
//! this way, one layer per `RUN`.

use crate::unpack::get_xattr;
use crate::whiteout::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use ch01_images::error::{Error, Result};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

// ANCHOR: diff
/// Writes the changes recorded in `upper` as an OCI layer tar.
/// Entries come in sorted order, so the same changes give the same bytes.
pub fn write_layer(upper: &Path, out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut hardlinks: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut paths = Vec::new();
    collect(upper, Path::new(""), &mut paths)?;
    for relative in paths {
        let full = upper.join(&relative);
        let meta = full.symlink_metadata().map_err(|e| io(&full, e))?;
        let name = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = relative.parent().unwrap_or(Path::new(""));
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            // An overlay whiteout: the file was deleted.
            append_marker(
                &mut tar,
                &parent.join(format!("{WHITEOUT_PREFIX}{name}")),
                &meta,
            )?;
            continue;
        }
        if meta.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = hardlinks.get(&key) {
                let mut header = header_for(&meta, tar::EntryType::Link);
                tar.append_link(&mut header, &relative, first)
                    .map_err(|e| io(&full, e))?;
                continue;
            }
            hardlinks.insert(key, relative.clone());
        }
        let special = meta.file_type();
        if special.is_char_device() || special.is_block_device() || special.is_fifo() {
            // A device node or a FIFO (a RUN's mknod/mkfifo, a root
            // filesystem ADDed whole): a header with its kind and its
            // numbers, no data.
            append_special(&mut tar, &relative, &meta)?;
            continue;
        }
        tar.append_path_with_name(&full, &relative)
            .map_err(|e| io(&full, e))?;
        if meta.is_dir() && get_xattr(&full, OVERLAY_OPAQUE_XATTR).as_deref() == Some(b"y") {
            // The directory replaced the lower layers' one.
            append_marker(&mut tar, &relative.join(OPAQUE_MARKER), &meta)?;
        }
    }
    tar.finish()
        .map_err(|e| Error::new(format!("writing the layer tar: {e}")))
}
// ANCHOR_END: diff

/// Every path under `dir`, parents before children, sorted by name.
fn collect(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(relative);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| io(&dir, e))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let path = relative.join(&name);
        out.push(path.clone());
        if root
            .join(&path)
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir())
        {
            collect(root, &path, out)?;
        }
    }
    Ok(())
}

fn header_for(meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid().into());
    header.set_gid(meta.gid().into());
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(0);
    header
}

/// A character or block device, or a FIFO: its kind, major and minor.
fn append_special<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    meta: &fs::Metadata,
) -> Result<()> {
    let kind = if meta.file_type().is_char_device() {
        tar::EntryType::Char
    } else if meta.file_type().is_block_device() {
        tar::EntryType::Block
    } else {
        tar::EntryType::Fifo
    };
    let mut header = header_for(meta, kind);
    let rdev = meta.rdev();
    header
        .set_device_major(nix::sys::stat::major(rdev) as u32)
        .map_err(|e| io(path, e))?;
    header
        .set_device_minor(nix::sys::stat::minor(rdev) as u32)
        .map_err(|e| io(path, e))?;
    tar.append_data(&mut header, path, std::io::empty())
        .map_err(|e| io(path, e))
}

fn append_marker<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    meta: &fs::Metadata,
) -> Result<()> {
    let mut header = header_for(meta, tar::EntryType::Regular);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, std::io::empty())
        .map_err(|e| io(path, e))
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::new(format!("diff {}: {e}", path.display()))
}
