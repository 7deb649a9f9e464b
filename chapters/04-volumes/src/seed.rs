//! Seeding (docker's "copy-up"): a new, empty volume mounted where the
//! image has content gets a copy of that content first, so a database
//! image's `/var/lib/postgresql/data` is not hidden by an empty directory.
//!
//! ```text
//! cp -a ROOTFS/var/lib/app/. ROOT/volumes/NAME/_data.tmp   owners, modes, xattrs, mtimes,
//!                                                          symlinks as symlinks, hardlinks
//! mv ROOT/volumes/NAME/_data.tmp ROOT/volumes/NAME/_data   (replaces the empty _data)
//! ```
//!
//! **Where it runs: the `after_create` hook** (chapter 3's seam), at the
//! container's first start. There the container's root filesystem is
//! mounted (by `lifecycle::start`, in the engine's own mount namespace)
//! and its PID 1 waits at the gate, *before* it makes any of its mounts:
//! so the copy reads the image's tree as the container will see it, and
//! the rename of `_data.tmp` onto `_data` happens before the container
//! bind-mounts `_data` (a bind made earlier would keep the old, empty
//! directory). Mounting chapter 2's `Rootfs` briefly at `create` would
//! cost an overlay mount and unmount per container for nothing; docker
//! too copies while the container's root filesystem is mounted for it.
//!
//! **What it never does**: follow a symlink. Every entry is read with
//! `lstat`; a symlink is copied as a symlink; every entry is created in a
//! directory this copy has just made (`O_EXCL`, `mkdir`, `symlink`), so
//! nothing the image put at the target can make it write outside the
//! volume. Owners, modes, xattrs and times are set on the entry itself
//! (`lchown`, `AT_SYMLINK_NOFOLLOW`, `lsetxattr`).
//!
//! **A killed copy** leaves `_data.tmp`, never a half-filled `_data`: the
//! next seed removes it and starts again (the volume is still empty).
//! The copy holds the volume's `seed.lock`, so two containers starting on
//! one new volume seed it once.

use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain::{self, shell_quote};
use nix::fcntl::AtFlags;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Is `dir` an empty directory? (A volume is seeded only then.)
pub fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

// ANCHOR: seed
/// Copies the directory `source` (the image's content at the mount
/// point, under the mounted root filesystem) into the volume whose data
/// directory is `data`, if `data` is empty. Returns whether it copied.
pub fn seed(source: &Path, data: &Path) -> Result<bool> {
    let Some(volume_dir) = data.parent() else {
        return Err(Error::new(format!("{} has no parent", data.display())));
    };
    let _lock = ch01_images::durable::lock(&volume_dir.join("seed.lock"))?;
    let is_dir = source.symlink_metadata().is_ok_and(|m| m.is_dir());
    if !is_dir || !is_empty_dir(data) || is_empty_dir(source) {
        return Ok(false);
    }
    let tmp = volume_dir.join("_data.tmp");
    explain::step(
        "seed the new volume with the image's content at the mount point (docker's copy-up)",
        Some(&format!(
            "cp -a {}/. {} && mv {} {}",
            shell_quote(&source.to_string_lossy()),
            shell_quote(&tmp.to_string_lossy()),
            shell_quote(&tmp.to_string_lossy()),
            shell_quote(&data.to_string_lossy())
        )),
    );
    // What a killed copy left: never mistaken for data.
    ch02_layers::unpack::remove_any(&tmp)?;
    let copied = Copier::default().copy_dir(source, &tmp).and_then(|()| {
        // rename(2) replaces an empty directory, atomically.
        fs::rename(&tmp, data).context("renaming into place", data)
    });
    if copied.is_err() {
        let _ = ch02_layers::unpack::remove_any(&tmp);
    }
    copied.map(|()| true)
}
// ANCHOR_END: seed

/// One copy: remembers the files with several names, to link them again.
#[derive(Default)]
struct Copier {
    /// (device, inode) of a source file → its first copy.
    links: HashMap<(u64, u64), std::path::PathBuf>,
}

impl Copier {
    // ANCHOR: copy
    /// Copies the directory `from` to `to` (which must not exist), and
    /// everything in it, without following a symlink.
    fn copy_dir(&mut self, from: &Path, to: &Path) -> Result<()> {
        let meta = from.symlink_metadata().context("reading", from)?;
        // 0700 while it fills: nobody else looks in; its mode comes last.
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .create(to)
            .context("creating", to)?;
        for entry in fs::read_dir(from).context("reading", from)? {
            let entry = entry.context("reading", from)?;
            let (source, target) = (entry.path(), to.join(entry.file_name()));
            self.copy_entry(&source, &target)?;
        }
        finish(from, to, &meta)
    }

    /// Copies one entry of any kind (a socket is skipped, as `cp -a` warns).
    fn copy_entry(&mut self, from: &Path, to: &Path) -> Result<()> {
        let meta = from.symlink_metadata().context("reading", from)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return self.copy_dir(from, to);
        }
        if kind.is_symlink() {
            let target = fs::read_link(from).context("reading", from)?;
            std::os::unix::fs::symlink(&target, to).context("creating", to)?;
            return finish(from, to, &meta);
        }
        if meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                return fs::hard_link(first, to).context("linking", to);
            }
            self.links
                .insert((meta.dev(), meta.ino()), to.to_path_buf());
        }
        if kind.is_file() {
            let mut input = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(from)
                .context("opening", from)?;
            let mut output = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(to)
                .context("creating", to)?;
            std::io::copy(&mut input, &mut output).context("copying to", to)?;
        } else {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_socket() {
                return Ok(());
            }
            let sflag = nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            let perm = nix::sys::stat::Mode::from_bits_truncate(0o600);
            nix::sys::stat::mknod(to, sflag, perm, meta.rdev())
                .map_err(|e| Error::new(format!("mknod {}: {e}", to.display())))?;
        }
        finish(from, to, &meta)
    }
    // ANCHOR_END: copy
}

// ANCHOR: finish
/// Gives the copy `to` the owner, xattrs, mode and times of `from`, on
/// the entry itself (never a symlink's target). The owner first: `chown`
/// clears set-user-ID bits, which `chmod` then sets back.
fn finish(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<()> {
    fchownat(
        None,
        to,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::new(format!("chown {}: {e}", to.display())))?;
    copy_xattrs(from, to);
    let is_symlink = meta.file_type().is_symlink();
    if !is_symlink {
        // `to` is no symlink: made by us as a file, directory or node.
        let mode = nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777);
        nix::sys::stat::fchmodat(None, to, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
            .map_err(|e| Error::new(format!("chmod {}: {e}", to.display())))?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(None, to, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| Error::new(format!("setting the times of {}: {e}", to.display())))
}
// ANCHOR_END: finish

/// Copies the extended attributes of `from` to `to` (both not followed).
/// One the filesystem will not take (a `trusted.` one on some
/// filesystems, any on a symlink) is skipped, as `cp -a` does.
fn copy_xattrs(from: &Path, to: &Path) {
    let (Ok(from_c), Ok(to_c)) = (cstring(from.as_os_str()), cstring(to.as_os_str())) else {
        return;
    };
    let Some(names) = xattr_call(|buf, len| {
        // SAFETY: the path is NUL-terminated; the buffer is `len` bytes.
        unsafe { libc::llistxattr(from_c.as_ptr(), buf.cast(), len) }
    }) else {
        return;
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_c) = CString::new(name) else {
            continue;
        };
        let value = xattr_call(|buf, len| {
            // SAFETY: both strings are NUL-terminated; the buffer is `len` bytes.
            unsafe { libc::lgetxattr(from_c.as_ptr(), name_c.as_ptr(), buf.cast(), len) }
        });
        if let Some(value) = value {
            // SAFETY: both strings are NUL-terminated; `value` lives across the call.
            unsafe {
                libc::lsetxattr(
                    to_c.as_ptr(),
                    name_c.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
        }
    }
}

/// Calls an xattr function twice: once for the size, once for the bytes.
fn xattr_call(call: impl Fn(*mut u8, usize) -> isize) -> Option<Vec<u8>> {
    let size = call(std::ptr::null_mut(), 0);
    if size < 0 {
        return None;
    }
    let mut buf = vec![0u8; size as usize];
    let n = call(buf.as_mut_ptr(), buf.len());
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::new("a path with a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("crabbox-seed-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn copies_modes_links_and_symlinks_without_following_them() {
        let base = temp("copy");
        let (image, volume) = (base.join("image/app"), base.join("vol"));
        fs::create_dir_all(image.join("sub")).unwrap();
        fs::set_permissions(&image, fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(image.join("seed.txt"), "seed\n").unwrap();
        fs::set_permissions(image.join("seed.txt"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(image.join("seed.txt"), image.join("sub/again.txt")).unwrap();
        // A hostile symlink: copied as a link, never written through.
        let outside = base.join("outside");
        std::os::unix::fs::symlink(&outside, image.join("escape")).unwrap();
        let mtime = TimeSpec::new(1_000_000, 0);
        utimensat(
            None,
            &image.join("seed.txt"),
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let data = volume.join("_data");
        fs::create_dir_all(&data).unwrap();
        assert!(seed(&image, &data).unwrap());
        assert_eq!(fs::read_to_string(data.join("seed.txt")).unwrap(), "seed\n");
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&data), 0o750);
        assert_eq!(mode(&data.join("seed.txt")), 0o640);
        assert_eq!(
            fs::metadata(data.join("seed.txt")).unwrap().mtime(),
            1_000_000
        );
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&data.join("seed.txt")),
            ino(&data.join("sub/again.txt"))
        );
        assert_eq!(fs::read_link(data.join("escape")).unwrap(), outside);
        assert!(!outside.exists());
        assert!(!volume.join("_data.tmp").exists());
        // Not empty any more: never seeded again.
        fs::write(data.join("seed.txt"), "changed\n").unwrap();
        assert!(!seed(&image, &data).unwrap());
        assert_eq!(
            fs::read_to_string(data.join("seed.txt")).unwrap(),
            "changed\n"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn nothing_to_copy_and_a_killed_copy() {
        let base = temp("none");
        let data = base.join("vol/_data");
        fs::create_dir_all(&data).unwrap();
        assert!(!seed(&base.join("missing"), &data).unwrap());
        fs::write(base.join("file"), "x").unwrap();
        assert!(!seed(&base.join("file"), &data).unwrap());
        // A copy killed halfway left _data.tmp: replaced, not kept.
        fs::create_dir_all(base.join("vol/_data.tmp/stale")).unwrap();
        fs::create_dir_all(base.join("image")).unwrap();
        fs::write(base.join("image/new"), "new").unwrap();
        assert!(seed(&base.join("image"), &data).unwrap());
        assert!(data.join("new").exists() && !data.join("stale").exists());
        assert!(!base.join("vol/_data.tmp").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
