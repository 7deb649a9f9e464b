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
//! **What it never does**: follow a symlink. The copy works relative
//! to open directories (`openat`, `mkdirat`, `symlinkat`, `fstatat` with
//! `AT_SYMLINK_NOFOLLOW`), as `cp -a` does: every name is looked up once,
//! in a directory already open, never as a whole path resolved again. A
//! symlink is copied as a symlink; every entry is created in a directory
//! this copy has just made (`O_EXCL`, `mkdirat`, `symlinkat`), so nothing
//! the image put at the target can make it write outside the volume.
//! Owners, modes, xattrs and times are set on the open file itself
//! (`fchown`, `fsetxattr`, `fchmod`, `futimens`), or with
//! `AT_SYMLINK_NOFOLLOW` on a symlink. File contents move in the kernel
//! (`copy_file_range`, or `sendfile` between filesystems).
//!
//! **A killed copy** leaves `_data.tmp`, never a half-filled `_data`: the
//! next seed removes it and starts again (the volume is still empty).
//! The copy holds the volume's `seed.lock`, so two containers starting on
//! one new volume seed it once.

use ch01_images::error::{io_error, Error, Result};
use ch01_images::explain::{self, shell_quote};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Is `dir` an empty directory? (A volume is seeded only then.)
pub fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Is there something to seed: `source` a directory with entries (not
/// a symlink), `data` an empty directory?
fn wants_seed(source: &Path, data: &Path) -> bool {
    let is_dir = source.symlink_metadata().is_ok_and(|m| m.is_dir());
    is_dir && is_empty_dir(data) && !is_empty_dir(source)
}

// ANCHOR: seed
/// Copies the directory `source` (the image's content at the mount
/// point, under the mounted root filesystem) into the volume whose data
/// directory is `data`, if `data` is empty. Returns whether it copied.
pub fn seed(source: &Path, data: &Path) -> Result<bool> {
    let Some(volume_dir) = data.parent() else {
        return Err(Error::new(format!("{} has no parent", data.display())));
    };
    // Most starts have nothing to seed: they skip the lock. Checked
    // again under it, since another start may be seeding right now.
    if !wants_seed(source, data) {
        return Ok(false);
    }
    let _lock = ch01_images::durable::lock(&volume_dir.join("seed.lock"))?;
    if !wants_seed(source, data) {
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
        fs::rename(&tmp, data).map_err(|e| io_error("renaming into place", data, e))
    });
    if copied.is_err() {
        let _ = ch02_layers::unpack::remove_any(&tmp);
    }
    copied.map(|()| true)
}
// ANCHOR_END: seed

/// One copy: remembers the files with several names, to link them again.
struct Copier {
    /// (device, inode) of a source file → its first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// `copy_file_range` works between these two filesystems (until it
    /// fails once: from an overlay to ext4 it says `EXDEV`).
    range_copy: bool,
}

impl Default for Copier {
    fn default() -> Self {
        Copier {
            links: HashMap::new(),
            range_copy: true,
        }
    }
}

/// `openat(dir, name, O_DIRECTORY|O_NOFOLLOW)`: a directory, never a
/// symlink to one.
fn open_dir(dir: Option<RawFd>, name: &CStr, path: &Path) -> Result<OwnedFd> {
    open_at(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
        path,
    )
}

/// `openat` with `O_NOFOLLOW | O_CLOEXEC`, as an owned descriptor.
fn open_at(
    dir: Option<RawFd>,
    name: &CStr,
    flags: OFlag,
    mode: Mode,
    path: &Path,
) -> Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir, name, flags, mode).map_err(|e| fail("opening", path, e))?;
    // SAFETY: `openat` just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An error naming what was done to which path.
fn fail(action: &str, path: &Path, e: nix::errno::Errno) -> Error {
    io_error(action, path, e.into())
}

impl Copier {
    // ANCHOR: copy
    /// Copies the directory `from` to `to` (which must not exist), and
    /// everything in it, without following a symlink.
    fn copy_dir(&mut self, from: &Path, to: &Path) -> Result<()> {
        let source = open_dir(None, &cstring(from.as_os_str())?, from)?;
        let meta =
            nix::sys::stat::fstat(source.as_raw_fd()).map_err(|e| fail("reading", from, e))?;
        // 0700 while it fills: nobody else looks in; its mode comes last.
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .create(to)
            .map_err(|e| io_error("creating", to, e))?;
        let target = open_dir(None, &cstring(to.as_os_str())?, to)?;
        self.copy_tree(source, &target, from, to, &meta)
    }

    /// Copies what is in the open directory `source` into the open,
    /// new directory `target`, then finishes `target` (its times last:
    /// filling it changed them).
    fn copy_tree(
        &mut self,
        source: OwnedFd,
        target: &OwnedFd,
        from: &Path,
        to: &Path,
        meta: &FileStat,
    ) -> Result<()> {
        let source_fd = source.as_raw_fd();
        let mut dir = Dir::from(source).map_err(|e| fail("reading", from, e))?;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| fail("reading", from, e))?;
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            self.copy_entry(source_fd, target.as_raw_fd(), name, from, to)?;
        }
        finish(source_fd, target.as_raw_fd(), meta, to)
    }

    /// Copies the entry `name` of the open directory `source` into the
    /// open directory `target` (`from` and `to` name them, for errors and
    /// links). Any kind; a socket is skipped, as `cp -a` warns.
    fn copy_entry(
        &mut self,
        source: RawFd,
        target: RawFd,
        name: &CStr,
        from: &Path,
        to: &Path,
    ) -> Result<()> {
        let path = |dir: &Path| dir.join(OsStr::from_bytes(name.to_bytes()));
        let meta = nix::sys::stat::fstatat(Some(source), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| fail("reading", &path(from), e))?;
        let kind = SFlag::from_bits_truncate(meta.st_mode & libc::S_IFMT);
        if kind == SFlag::S_IFDIR {
            let (from, to) = (path(from), path(to));
            let inner = open_dir(Some(source), name, &from)?;
            nix::sys::stat::mkdirat(Some(target), name, Mode::from_bits_truncate(0o700))
                .map_err(|e| fail("creating", &to, e))?;
            let copy = open_dir(Some(target), name, &to)?;
            return self.copy_tree(inner, &copy, &from, &to, &meta);
        }
        if kind == SFlag::S_IFLNK {
            let link = nix::fcntl::readlinkat(Some(source), name)
                .map_err(|e| fail("reading", &path(from), e))?;
            nix::unistd::symlinkat(link.as_os_str(), Some(target), name)
                .map_err(|e| fail("creating", &path(to), e))?;
            return finish_at(target, name, &meta, &path(from), &path(to));
        }
        if kind == SFlag::S_IFSOCK {
            return Ok(());
        }
        if meta.st_nlink > 1 {
            let key = (meta.st_dev, meta.st_ino);
            if let Some(first) = self.links.get(&key) {
                let first = cstring(first.as_os_str())?;
                return nix::unistd::linkat(
                    None,
                    first.as_c_str(),
                    Some(target),
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| fail("linking", &path(to), e));
            }
            self.links.insert(key, path(to));
        }
        if kind == SFlag::S_IFREG {
            let input = open_at(
                Some(source),
                name,
                OFlag::O_RDONLY,
                Mode::empty(),
                &path(from),
            )?;
            let output = open_at(
                Some(target),
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                Mode::from_bits_truncate(0o600),
                &path(to),
            )?;
            self.copy_data(
                input.as_raw_fd(),
                output.as_raw_fd(),
                meta.st_size as u64,
                &path(to),
            )?;
            return finish(input.as_raw_fd(), output.as_raw_fd(), &meta, &path(to));
        }
        // A device node or a FIFO: made empty, then finished by name.
        nix::sys::stat::mknodat(
            Some(target),
            name,
            kind,
            Mode::from_bits_truncate(0o600),
            meta.st_rdev,
        )
        .map_err(|e| fail("mknod", &path(to), e))?;
        finish_at(target, name, &meta, &path(from), &path(to))
    }
    // ANCHOR_END: copy

    /// Copies `size` bytes (what `fstatat` saw: the image's layers do not
    /// change) from `input` to `output` in the kernel: `copy_file_range`
    /// (a clone or an in-kernel copy), or `sendfile` when the two are on
    /// different filesystems; `read`/`write` if neither will.
    fn copy_data(&mut self, input: RawFd, output: RawFd, size: u64, to: &Path) -> Result<()> {
        let mut done = 0u64;
        let chunk = |done: u64| (size - done).min(1 << 30) as usize;
        while self.range_copy && done < size {
            // SAFETY: two open descriptors; null offsets use the files' own.
            let n = unsafe {
                libc::copy_file_range(
                    input,
                    std::ptr::null_mut(),
                    output,
                    std::ptr::null_mut(),
                    chunk(done),
                    0,
                )
            };
            match n {
                0 => return Ok(()),
                n if n > 0 => done += n as u64,
                _ => {
                    let e = std::io::Error::last_os_error();
                    let unsupported = matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
                    );
                    if !unsupported || done > 0 {
                        return Err(io_error("copying to", to, e));
                    }
                    self.range_copy = false;
                }
            }
        }
        while done < size {
            // SAFETY: two open descriptors; a null offset uses the input's own.
            let n = unsafe { libc::sendfile(output, input, std::ptr::null_mut(), chunk(done)) };
            match n {
                0 => return Ok(()),
                n if n > 0 => done += n as u64,
                _ if done == 0 => break,
                _ => return Err(io_error("copying to", to, std::io::Error::last_os_error())),
            }
        }
        if done < size {
            // Neither works here: through user space, as `io::copy` does.
            // SAFETY: both stay open (owned by the caller) while these
            // borrowed `File`s live, and are not closed by them.
            let borrow = |fd| std::mem::ManuallyDrop::new(unsafe { fs::File::from_raw_fd(fd) });
            let (mut reader, mut writer) = (borrow(input), borrow(output));
            std::io::copy(&mut *reader, &mut *writer).map_err(|e| io_error("copying to", to, e))?;
        }
        Ok(())
    }
}

// ANCHOR: finish
/// Gives the open copy `to` the owner, xattrs, mode and times of the
/// open `from` (`meta`): on the files themselves, never a path looked up
/// again. The owner first: `chown` clears set-user-ID bits, which
/// `fchmod` then sets back.
fn finish(from: RawFd, to: RawFd, meta: &FileStat, path: &Path) -> Result<()> {
    let (uid, gid) = (Uid::from_raw(meta.st_uid), Gid::from_raw(meta.st_gid));
    nix::unistd::fchown(to, Some(uid), Some(gid)).map_err(|e| fail("chown", path, e))?;
    copy_xattrs(&Xattrs::Fd(from), &Xattrs::Fd(to));
    let mode = Mode::from_bits_truncate(meta.st_mode & 0o7777);
    nix::sys::stat::fchmod(to, mode).map_err(|e| fail("chmod", path, e))?;
    let (atime, mtime) = times(meta);
    nix::sys::stat::futimens(to, &atime, &mtime).map_err(|e| fail("setting the times of", path, e))
}

/// The same for an entry that cannot be opened (a symlink, a device
/// node, a FIFO): by name in its open directory, never following a link.
fn finish_at(dir: RawFd, name: &CStr, meta: &FileStat, from: &Path, to: &Path) -> Result<()> {
    let (uid, gid) = (Uid::from_raw(meta.st_uid), Gid::from_raw(meta.st_gid));
    nix::unistd::fchownat(
        Some(dir),
        name,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| fail("chown", to, e))?;
    if let (Ok(from_c), Ok(to_c)) = (cstring(from.as_os_str()), cstring(to.as_os_str())) {
        copy_xattrs(&Xattrs::Path(&from_c), &Xattrs::Path(&to_c));
    }
    let is_symlink = meta.st_mode & libc::S_IFMT == libc::S_IFLNK;
    if !is_symlink {
        // A node we made: no symlink.
        let mode = Mode::from_bits_truncate(meta.st_mode & 0o7777);
        nix::sys::stat::fchmodat(
            Some(dir),
            name,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| fail("chmod", to, e))?;
    }
    let (atime, mtime) = times(meta);
    nix::sys::stat::utimensat(
        Some(dir),
        name,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| fail("setting the times of", to, e))
}
// ANCHOR_END: finish

/// The access and modification times in `meta`.
fn times(meta: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(meta.st_atime, meta.st_atime_nsec),
        TimeSpec::new(meta.st_mtime, meta.st_mtime_nsec),
    )
}

/// Where extended attributes are read or written: an open file, or a
/// path whose last component is not followed (the `l…xattr` calls).
enum Xattrs<'a> {
    Fd(RawFd),
    Path(&'a CStr),
}

/// Copies the extended attributes of `from` to `to`. Most files have
/// none: one `listxattr` says so. One the filesystem will not take (a
/// `trusted.` one on some filesystems, any on a symlink) is skipped, as
/// `cp -a` does.
fn copy_xattrs(from: &Xattrs, to: &Xattrs) {
    let Some(names) = xattr_call(|buf, len| match from {
        // SAFETY: an open descriptor; the buffer is `len` bytes.
        Xattrs::Fd(fd) => unsafe { libc::flistxattr(*fd, buf.cast(), len) },
        // SAFETY: the path is NUL-terminated; the buffer is `len` bytes.
        Xattrs::Path(p) => unsafe { libc::llistxattr(p.as_ptr(), buf.cast(), len) },
    }) else {
        return;
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_c) = CString::new(name) else {
            continue;
        };
        let value = xattr_call(|buf, len| match from {
            // SAFETY: the name is NUL-terminated; the buffer is `len` bytes.
            Xattrs::Fd(fd) => unsafe { libc::fgetxattr(*fd, name_c.as_ptr(), buf.cast(), len) },
            // SAFETY: both strings are NUL-terminated; the buffer is `len` bytes.
            Xattrs::Path(p) => unsafe {
                libc::lgetxattr(p.as_ptr(), name_c.as_ptr(), buf.cast(), len)
            },
        });
        let Some(value) = value else { continue };
        let (data, size) = (value.as_ptr().cast(), value.len());
        match to {
            // SAFETY: the name is NUL-terminated; `value` lives across the call.
            Xattrs::Fd(fd) => unsafe { libc::fsetxattr(*fd, name_c.as_ptr(), data, size, 0) },
            // SAFETY: both strings are NUL-terminated; `value` lives across the call.
            Xattrs::Path(p) => unsafe {
                libc::lsetxattr(p.as_ptr(), name_c.as_ptr(), data, size, 0)
            },
        };
    }
}

/// Calls an xattr function for the size, then (unless there is nothing)
/// for the bytes.
fn xattr_call(call: impl Fn(*mut u8, usize) -> isize) -> Option<Vec<u8>> {
    let size = call(std::ptr::null_mut(), 0);
    if size <= 0 {
        return (size == 0).then(Vec::new);
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
    use nix::sys::stat::utimensat;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
