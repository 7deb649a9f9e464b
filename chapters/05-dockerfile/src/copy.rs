//! COPY and ADD: docker's rules for putting files into an image.
//!
//! The builder mounts the stage's root filesystem (an overlay, whose upper
//! directory becomes the new layer) and this module writes into it. The
//! rules are docker's, and each one surprises somebody once:
//!
//! - `COPY dir /app` copies the **contents** of `dir` into `/app`, not
//!   `dir` itself;
//! - `COPY app.py /app/` makes `/app/app.py`; `COPY app.py /app` does the
//!   same if `/app` is already a directory, and otherwise makes a file
//!   *named* `/app`;
//! - several sources (or a glob matching several files) need a destination
//!   ending in `/`;
//! - missing directories on the way are made (0755); everything written
//!   belongs to root (0:0) unless `--chown` says otherwise, and keeps its
//!   mode (unless `--chmod`) and its modification time.
//!
//! The destination is a path **in the image**. An image is full of absolute
//! symlinks (`/etc/nginx/sites-enabled/default ->
//! /etc/nginx/sites-available/default`), and following one of them on the
//! host would write to the host's `/etc`. So every directory on the way is
//! resolved with chapter 2's [`resolve_in_root`](ch02_layers::contain),
//! as if the root filesystem were `/`; and a symlink at the very name being
//! written is replaced, never written through.
//!
//! `ADD` does all of this too, and one thing more: a local tar archive
//! (plain, gzip, bzip2 or xz) is unpacked instead of copied
//! ([`add_archive`]), with the same containment as an image layer.

use crate::context::{Context, Entry, Source};
use ch01_images::error::{io_error, Error, Result};
use ch02_layers::contain::Resolver;
use ch02_layers::unpack::{apply_layer, remove_any, Mode};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The flags of COPY and ADD that change what is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `--chown=user:group`, already looked up in the image: (uid, gid).
    pub chown: Option<(u32, u32)>,
    /// `--chmod=0755`: the mode of every file and directory copied.
    pub chmod: Option<u32>,
}

// ANCHOR: copy_into
/// Copies `sources` (found in `context`) to `dest`, an absolute path in the
/// image whose root filesystem is mounted at `rootfs`. Returns how many
/// entries were written.
pub fn copy_into(
    rootfs: &Path,
    context: &Context,
    sources: &[Source],
    dest: &str,
    options: &CopyOptions,
) -> Result<u64> {
    if sources.len() > 1 && !names_a_directory(dest) {
        return Err(Error::new(
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ));
    }
    let dest_parts = clean_parts(dest);
    let mut writer = Writer {
        resolver: Resolver::new(rootfs),
        owner: options.chown.unwrap_or((0, 0)),
        chmod: options.chmod,
        dir_times: Vec::new(),
        written: 0,
    };
    // "Into a directory" when the Dockerfile says so with a `/`, or when
    // the image already has a directory there.
    let dest_is_dir =
        names_a_directory(dest) || is_real_dir(&writer.resolver.resolve(&dest_parts, true)?);
    for source in sources {
        let mut target = dest_parts.clone();
        if !source.is_dir() && dest_is_dir {
            if source.name.is_empty() {
                return Err(Error::new(format!(
                    "COPY failed: {} has no file name to copy under {dest}",
                    source.relative.display()
                )));
            }
            target.push(source.name.clone());
        }
        for entry in context.entries(source)? {
            let mut parts = target.clone();
            parts.extend(entry.relative.iter().map(|p| p.to_os_string()));
            writer.write(&parts, &entry)?;
        }
    }
    writer.finish()
}
// ANCHOR_END: copy_into

/// Does the Dockerfile's destination say "a directory" by itself? Docker
/// takes a trailing `/` (and `.`, as in `COPY a b .`) to mean so.
fn names_a_directory(dest: &str) -> bool {
    dest.ends_with('/') || dest.ends_with("/.") || dest == "."
}

/// The components of a path in the image, cleaned: no empty or `.`
/// components, and `..` goes up one, never above `/`.
fn clean_parts(path: &str) -> Vec<OsString> {
    let mut parts: Vec<OsString> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part.into()),
        }
    }
    parts
}

fn is_real_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

/// What one COPY is writing, and what it must still do at the end.
struct Writer {
    /// Resolves paths in the image inside `rootfs`, remembering directories.
    resolver: Resolver,
    owner: (u32, u32),
    chmod: Option<u32>,
    /// Directories copied, with the time to give them once their contents
    /// are written (writing a child changes a directory's time).
    dir_times: Vec<(PathBuf, fs::Metadata)>,
    written: u64,
}

impl Writer {
    // ANCHOR: write_entry
    /// Writes one entry at `parts` (a path in the image).
    fn write(&mut self, parts: &[OsString], entry: &Entry) -> Result<()> {
        let kind = entry.metadata.file_type();
        // The top of a directory source is the destination directory: it is
        // made if missing, and an existing one is left as it is.
        let is_top_dir = kind.is_dir() && entry.relative.as_os_str().is_empty();
        let Some((name, parent_parts)) = parts.split_last() else {
            // The image's `/` itself: only a directory can land there.
            return match is_top_dir {
                true => Ok(()),
                false => Err(Error::new("COPY failed: cannot replace / with a file")),
            };
        };
        let parent = self.make_dirs(parent_parts)?;
        let path = parent.join(name);
        if kind.is_dir() {
            // A directory over a directory merges; a symlink to a directory
            // (inside the image) is followed, as docker does for `/lib`.
            let existing = self.resolver.resolve(parts, true)?;
            if is_real_dir(&existing) {
                if !is_top_dir {
                    self.set_attributes(&existing, entry)?;
                }
                return Ok(());
            }
            self.remove(&path)?;
            fs::create_dir(&path).map_err(|e| io_error("creating", &path, e))?;
            self.resolver.made_dir(&path);
        } else if kind.is_file() {
            // The file named by the Dockerfile's destination follows a
            // symlink there, inside the image, as buildkit does (`COPY
            // nginx.conf /etc/nginx/sites-enabled/default` replaces what the
            // link points to, and the link stays); files inside a copied
            // directory replace whatever is at their name.
            let path = match entry.relative.as_os_str().is_empty() {
                true => {
                    let followed = self.resolver.resolve(parts, true)?;
                    if followed != path {
                        if let Some(parent) = followed.parent() {
                            fs::create_dir_all(parent)
                                .map_err(|e| io_error("creating", parent, e))?;
                        }
                    }
                    followed
                }
                false => path,
            };
            if is_real_dir(&path) {
                return Err(Error::new(format!(
                    "COPY failed: /{} is a directory in the image: end the destination with / to copy into it",
                    PathBuf::from_iter(parts).display()
                )));
            }
            self.remove(&path)?;
            self.copy_file(&entry.path, &path)?;
            self.set_attributes(&path, entry)?;
            self.written += 1;
            return Ok(());
        } else if kind.is_symlink() {
            let target = fs::read_link(&entry.path)
                .map_err(|e| io_error("reading symlink", &entry.path, e))?;
            self.remove(&path)?;
            symlink(&target, &path).map_err(|e| io_error("creating symlink", &path, e))?;
        } else {
            return Ok(()); // a device, fifo or socket: docker skips those too
        }
        self.set_attributes(&path, entry)?;
        self.written += 1;
        Ok(())
    }
    // ANCHOR_END: write_entry

    /// Copies a file's bytes to a new file at `to`.
    fn copy_file(&self, from: &Path, to: &Path) -> Result<()> {
        // O_NOFOLLOW: had the source become a symlink since it was listed,
        // opening it would read whatever it points to on the host.
        let mut source = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(from)
            .map_err(|e| io_error("reading", from, e))?;
        // create_new: never through a symlink someone planted at this name.
        let mut copy = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| io_error("creating", to, e))?;
        io::copy(&mut source, &mut copy).map_err(|e| io_error("writing", to, e))?;
        Ok(())
    }

    /// Gives a copied entry its owner, mode and time.
    fn set_attributes(&mut self, path: &Path, entry: &Entry) -> Result<()> {
        let (uid, gid) = self.owner;
        // Owner first: chown clears setuid and setgid, so the mode comes after.
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| io_error("changing the owner of", path, e))?;
        let kind = entry.metadata.file_type();
        if !kind.is_symlink() {
            let mode = self.chmod.unwrap_or(entry.metadata.mode() & 0o7777);
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| io_error("setting the mode of", path, e))?;
        }
        if kind.is_dir() {
            self.dir_times
                .push((path.to_path_buf(), entry.metadata.clone()));
            Ok(())
        } else {
            set_mtime(path, &entry.metadata)
        }
    }

    /// Removes whatever is at `path` (a file, a symlink, a directory),
    /// and makes the resolver forget it.
    fn remove(&mut self, path: &Path) -> Result<()> {
        self.resolver.forget(path);
        remove_any(path)
    }

    /// Makes sure the directory at `parts` (a path in the image) exists, as
    /// `mkdir -p` would inside the image, and returns its host path. Each
    /// component is resolved inside the root filesystem, so a symlink on the
    /// way leads where it leads *in the image*.
    fn make_dirs(&mut self, parts: &[OsString]) -> Result<PathBuf> {
        let dir = self.resolver.resolve(parts, true)?;
        if is_real_dir(&dir) {
            return Ok(dir); // the usual case: there already
        }
        for end in 1..=parts.len() {
            let dir = self.resolver.resolve(&parts[..end], true)?;
            match dir.symlink_metadata() {
                Ok(metadata) if metadata.is_dir() => continue,
                Ok(_) => {
                    return Err(Error::new(format!(
                        "COPY failed: /{} is not a directory in the image — copy to another path, or remove it in an earlier step",
                        PathBuf::from_iter(&parts[..end]).display()
                    )))
                }
                Err(_) => {
                    fs::create_dir(&dir).map_err(|e| io_error("creating", &dir, e))?;
                    let (uid, gid) = self.owner;
                    std::os::unix::fs::lchown(&dir, Some(uid), Some(gid))
                        .map_err(|e| io_error("changing the owner of", &dir, e))?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                        .map_err(|e| io_error("setting the mode of", &dir, e))?;
                    self.resolver.made_dir(&dir);
                }
            }
        }
        self.resolver.resolve(parts, true)
    }

    /// Gives the copied directories their times, deepest first, now that
    /// nothing more is written into them.
    fn finish(self) -> Result<u64> {
        for (dir, metadata) in self.dir_times.iter().rev() {
            set_mtime(dir, metadata)?;
        }
        Ok(self.written)
    }
}

/// Sets the modification time of `path` itself (never a symlink's target).
fn set_mtime(path: &Path, metadata: &fs::Metadata) -> Result<()> {
    let time = nix::sys::time::TimeSpec::new(metadata.mtime(), metadata.mtime_nsec());
    nix::sys::stat::utimensat(
        None,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_error("setting the time of", path, e.into()))
}

/// How an archive is compressed, told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
}

fn compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// A tar header says `ustar` at offset 257 (POSIX and GNU tar both do).
fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

// ANCHOR: add_archive
/// ADD's extra rule: if `archive` is a tar, plain or compressed (told by
/// its first bytes, never by its name), unpack it into the directory `dest`
/// in the image and return true. Anything else returns false: the caller
/// copies it as a file.
pub fn add_archive(rootfs: &Path, archive: &Path, dest: &str) -> Result<bool> {
    // Only a regular file is an archive. A symlink in the build context is
    // copied as a symlink: following it here would read whatever it points
    // to on the host (O_NOFOLLOW closes the gap between look and open).
    let is_file = archive.symlink_metadata().is_ok_and(|m| m.is_file());
    if !is_file {
        return Ok(false);
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(archive)
        .map_err(|e| io_error("reading", archive, e))?;
    let head = read_head(&mut file).map_err(|e| io_error("reading", archive, e))?;
    file.rewind().map_err(|e| io_error("reading", archive, e))?;
    match compression(&head) {
        Compression::None => unpack_if_tar(file, rootfs, archive, dest),
        Compression::Gzip => {
            unpack_if_tar(flate2::read::GzDecoder::new(file), rootfs, archive, dest)
        }
        Compression::Bzip2 => {
            unpack_if_tar(bzip2::read::BzDecoder::new(file), rootfs, archive, dest)
        }
        Compression::Xz => {
            // lzma-rs decompresses from a reader into a writer, all at once:
            // into a temporary file first, which then reads as a plain tar.
            let Some(tar) = xz_to_temporary_file(file)? else {
                return Ok(false); // not really xz: a file like any other
            };
            unpack_if_tar(tar, rootfs, archive, dest)
        }
    }
}
// ANCHOR_END: add_archive

/// Unpacks the (decompressed) stream into `dest` if it starts like a tar.
fn unpack_if_tar(mut stream: impl Read, rootfs: &Path, archive: &Path, dest: &str) -> Result<bool> {
    // Damaged compressed data at the very start: not an archive after all.
    let Ok(head) = read_head(&mut stream) else {
        return Ok(false);
    };
    if !is_tar(&head) {
        return Ok(false);
    }
    let mut writer = Writer {
        resolver: Resolver::new(rootfs),
        owner: (0, 0),
        chmod: None,
        dir_times: Vec::new(),
        written: 0,
    };
    let dir = writer.make_dirs(&clean_parts(dest))?;
    // Chapter 2's layer unpacker: every entry stays under `dir`, whatever
    // `../` or symlink it tries. Flat mode, because this is no overlay
    // layer: a `.wh.` name is a plain deletion here, never a whiteout device.
    apply_layer(io::Cursor::new(head).chain(stream), &dir, Mode::Flat).map_err(|e| {
        Error::new(format!(
            "ADD failed: unpacking {}: {}",
            archive.display(),
            e.message()
        ))
    })?;
    Ok(true)
}

/// Reads up to one tar header (512 bytes): less only at the end of the stream.
fn read_head(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    stream.take(512).read_to_end(&mut head)?;
    Ok(head)
}

/// Decompresses xz into a temporary file, returned open at its start; None
/// when the data is not valid xz.
fn xz_to_temporary_file(compressed: fs::File) -> Result<Option<fs::File>> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("crabbox-add-{}-{number}.tar", std::process::id()));
    let mut tar = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_error("creating", &path, e))?;
    // Removed at once: an open file outlives its name, and nothing is left
    // behind if the build stops half-way.
    fs::remove_file(&path).map_err(|e| io_error("removing", &path, e))?;
    let mut input = io::BufReader::new(compressed);
    let mut output = io::BufWriter::new(&mut tar);
    if lzma_rs::xz_decompress(&mut input, &mut output).is_err() {
        return Ok(None);
    }
    output.flush().map_err(|e| io_error("writing", &path, e))?;
    drop(output);
    tar.rewind().map_err(|e| io_error("reading", &path, e))?;
    Ok(Some(tar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ignore::Ignore;
    use std::os::unix::fs::symlink;

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crabbox-copy-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Owners can only be given by root: these tests need it.
    fn root_or_skip() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("CRABBOX_REQUIRE_PRIVILEGED").is_none(),
            "needs root, and CRABBOX_REQUIRE_PRIVILEGED is set"
        );
        eprintln!("skipped: needs root");
        false
    }

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn read(root: &Path, relative: &str) -> String {
        fs::read_to_string(root.join(relative)).unwrap()
    }

    /// A build context and an empty root filesystem beside it.
    fn setup(name: &str) -> (PathBuf, Context, PathBuf) {
        let base = scratch(name);
        let context_dir = base.join("context");
        for file in ["app.py", "conf/a.conf", "conf/sub/b.conf", "notes.md"] {
            write(&context_dir, file, file);
        }
        let rootfs = base.join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        let context = Context::build_context(&context_dir, Ignore::none()).unwrap();
        (base, context, rootfs)
    }

    fn copy(rootfs: &Path, context: &Context, pattern: &str, dest: &str) -> Result<u64> {
        let sources = context.resolve(pattern)?;
        copy_into(rootfs, context, &sources, dest, &CopyOptions::default())
    }

    #[test]
    fn a_file_goes_under_a_directory_or_becomes_the_destination() {
        if !root_or_skip() {
            return;
        }
        let (base, context, rootfs) = setup("basename");
        copy(&rootfs, &context, "app.py", "/app/").unwrap();
        assert_eq!(read(&rootfs, "app/app.py"), "app.py");
        // `/app` is a directory now: no slash needed.
        copy(&rootfs, &context, "notes.md", "/app").unwrap();
        assert_eq!(read(&rootfs, "app/notes.md"), "notes.md");
        // No such directory and no slash: the file is named `/srv/main.py`.
        copy(&rootfs, &context, "app.py", "/srv/main.py").unwrap();
        assert_eq!(read(&rootfs, "srv/main.py"), "app.py");
        let srv = fs::metadata(rootfs.join("srv")).unwrap();
        assert_eq!(srv.mode() & 0o7777, 0o755, "missing parents are 0755");
        // Copying again replaces the file.
        fs::write(context.root().join("app.py"), "v2").unwrap();
        copy(&rootfs, &context, "app.py", "/srv/main.py").unwrap();
        assert_eq!(read(&rootfs, "srv/main.py"), "v2");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_directory_copies_its_contents_and_merges() {
        if !root_or_skip() {
            return;
        }
        let (base, context, rootfs) = setup("contents");
        write(&rootfs, "etc/app/existing", "kept");
        let written = copy(&rootfs, &context, "conf", "/etc/app").unwrap();
        assert_eq!(written, 3, "a.conf, sub, sub/b.conf");
        assert_eq!(read(&rootfs, "etc/app/a.conf"), "conf/a.conf");
        assert_eq!(read(&rootfs, "etc/app/sub/b.conf"), "conf/sub/b.conf");
        assert_eq!(read(&rootfs, "etc/app/existing"), "kept");
        assert!(
            !rootfs.join("etc/app/conf").exists(),
            "contents, not the directory"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn several_sources_need_a_trailing_slash() {
        if !root_or_skip() {
            return;
        }
        let (base, context, rootfs) = setup("several");
        let sources = context.resolve("*.*").unwrap();
        assert_eq!(sources.len(), 2);
        let error =
            copy_into(&rootfs, &context, &sources, "/app", &CopyOptions::default()).unwrap_err();
        assert_eq!(
            error.message(),
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
        );
        copy_into(
            &rootfs,
            &context,
            &sources,
            "/app/",
            &CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(read(&rootfs, "app/app.py"), "app.py");
        assert_eq!(read(&rootfs, "app/notes.md"), "notes.md");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn symlinks_in_the_image_are_followed_inside_it() {
        if !root_or_skip() {
            return;
        }
        let (base, context, rootfs) = setup("symlinks");
        let host_target = format!("/etc/crabbox-copy-test-{}", std::process::id());
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        symlink(&host_target, rootfs.join("etc/a")).unwrap();
        // A directory on the way through an absolute symlink: the image's.
        copy(&rootfs, &context, "app.py", "/etc/a/app.py").unwrap();
        assert_eq!(
            read(&rootfs, &format!("{host_target}/app.py")[1..]),
            "app.py"
        );
        assert!(
            !Path::new(&host_target).exists(),
            "nothing on the host's /etc"
        );

        // A symlink at the name itself is followed inside the image (the
        // link stays, its target in the image gets the file), never onto
        // the host's file of that name.
        symlink("/etc/passwd", rootfs.join("etc/link")).unwrap();
        let host_passwd = fs::read("/etc/passwd").unwrap();
        copy(&rootfs, &context, "notes.md", "/etc/link").unwrap();
        assert!(fs::symlink_metadata(rootfs.join("etc/link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(read(&rootfs, "etc/passwd"), "notes.md");
        assert_eq!(fs::read("/etc/passwd").unwrap(), host_passwd);

        // A symlink copied from the context stays a symlink.
        symlink("app.py", context.root().join("latest")).unwrap();
        copy(&rootfs, &context, "latest", "/srv/").unwrap();
        assert_eq!(
            fs::read_link(rootfs.join("srv/latest")).unwrap(),
            Path::new("app.py")
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn copy_from_another_root_filesystem() {
        if !root_or_skip() {
            return;
        }
        let (base, _, rootfs) = setup("from");
        let stage = base.join("stage");
        write(&stage, "usr/lib/libc-2.36.so", "libc");
        symlink("libc-2.36.so", stage.join("usr/lib/libc.so.6")).unwrap();
        symlink("/usr/lib", stage.join("lib")).unwrap();
        let from = Context::root_filesystem(&stage);
        // The symlink is followed in the stage, and the copy keeps its name.
        let sources = from.resolve("/lib/libc.so.6").unwrap();
        copy_into(&rootfs, &from, &sources, "/out/", &CopyOptions::default()).unwrap();
        assert_eq!(read(&rootfs, "out/libc.so.6"), "libc");
        assert!(fs::symlink_metadata(rootfs.join("out/libc.so.6"))
            .unwrap()
            .is_file());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn chmod_chown_and_mtime() {
        if !root_or_skip() {
            return;
        }
        let (base, context, rootfs) = setup("owners");
        let file = fs::File::options()
            .write(true)
            .open(context.root().join("conf/a.conf"))
            .unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        file.set_modified(old).unwrap();
        drop(file);
        fs::set_permissions(
            context.root().join("app.py"),
            fs::Permissions::from_mode(0o751),
        )
        .unwrap();

        copy(&rootfs, &context, "app.py", "/plain/").unwrap();
        let plain = fs::metadata(rootfs.join("plain/app.py")).unwrap();
        assert_eq!((plain.uid(), plain.gid()), (0, 0));
        assert_eq!(plain.mode() & 0o7777, 0o751, "the mode is kept");

        let sources = context.resolve("conf").unwrap();
        let options = CopyOptions {
            chown: Some((1000, 1001)),
            chmod: Some(0o640),
        };
        copy_into(&rootfs, &context, &sources, "/new/conf/", &options).unwrap();
        for path in ["new", "new/conf", "new/conf/a.conf", "new/conf/sub"] {
            let metadata = fs::metadata(rootfs.join(path)).unwrap();
            assert_eq!((metadata.uid(), metadata.gid()), (1000, 1001), "{path}");
        }
        let copied = fs::metadata(rootfs.join("new/conf/a.conf")).unwrap();
        assert_eq!(copied.mode() & 0o7777, 0o640);
        assert_eq!(copied.modified().unwrap(), old, "the mtime is kept");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn special_files_are_skipped() {
        if !root_or_skip() {
            return;
        }
        let (base, context, rootfs) = setup("special");
        nix::unistd::mkfifo(
            &context.root().join("conf/pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let written = copy(&rootfs, &context, "conf", "/c").unwrap();
        assert_eq!(written, 4, "/c itself, a.conf, sub, sub/b.conf: no pipe");
        assert!(!rootfs.join("c/pipe").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    /// A tar holding `dir/` and `dir/hello.txt`, made with the tar crate.
    fn sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        builder
            .append_data(&mut header, "dir/", io::empty())
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(5);
        builder
            .append_data(&mut header, "dir/hello.txt", &b"hello"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn add_unpacks_tars_of_every_compression() {
        if !root_or_skip() {
            return;
        }
        let base = scratch("archives");
        let rootfs = base.join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        let tar = sample_tar();
        let gzip = {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&tar).unwrap();
            encoder.finish().unwrap()
        };
        let bzip2 = {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            encoder.write_all(&tar).unwrap();
            encoder.finish().unwrap()
        };
        let xz = {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut &tar[..], &mut out).unwrap();
            out
        };
        for (name, bytes) in [("plain", tar), ("gzip", gzip), ("bzip2", bzip2), ("xz", xz)] {
            // The name says nothing: only the bytes count.
            let archive = base.join(format!("{name}.bin"));
            fs::write(&archive, &bytes).unwrap();
            assert!(
                add_archive(&rootfs, &archive, &format!("/x/{name}")).unwrap(),
                "{name}"
            );
            assert_eq!(
                read(&rootfs, &format!("x/{name}/dir/hello.txt")),
                "hello",
                "{name}"
            );
        }
        // Not a tar, even compressed: false, and nothing written.
        let text = base.join("notes.txt.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"just text").unwrap();
        fs::write(&text, encoder.finish().unwrap()).unwrap();
        assert!(!add_archive(&rootfs, &text, "/y").unwrap());
        fs::write(&text, "plain text").unwrap();
        assert!(!add_archive(&rootfs, &text, "/y").unwrap());
        // A symlink to a tar is no archive: it is copied as the symlink it is.
        symlink(base.join("plain.bin"), base.join("link.tar")).unwrap();
        assert!(!add_archive(&rootfs, &base.join("link.tar"), "/y").unwrap());
        assert!(!rootfs.join("y").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    /// A tar entry with any name at all (the tar crate refuses to write `..`).
    fn raw_entry(
        builder: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_ustar();
        let fields = header.as_ustar_mut().unwrap();
        fields.name[..name.len()].copy_from_slice(name.as_bytes());
        fields.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    #[test]
    fn a_hostile_tar_stays_inside_its_destination() {
        if !root_or_skip() {
            return;
        }
        let base = scratch("hostile");
        let rootfs = base.join("rootfs");
        let outside = base.join("outside");
        fs::create_dir_all(&rootfs).unwrap();
        fs::create_dir_all(&outside).unwrap();

        // An absolute symlink, then a write through it: it lands under the
        // destination, where the symlink points *in there*.
        let mut builder = tar::Builder::new(Vec::new());
        let evil_target = outside.to_string_lossy().into_owned();
        raw_entry(
            &mut builder,
            "evil",
            tar::EntryType::Symlink,
            &evil_target,
            b"",
        );
        raw_entry(
            &mut builder,
            "evil/pwned",
            tar::EntryType::Regular,
            "",
            b"pwned",
        );
        let through_symlink = base.join("symlink.tar");
        fs::write(&through_symlink, builder.into_inner().unwrap()).unwrap();
        assert!(add_archive(&rootfs, &through_symlink, "/dest").unwrap());
        assert!(!outside.join("pwned").exists(), "written outside");
        assert_eq!(read(&rootfs, &format!("dest{evil_target}/pwned")), "pwned");

        // A name climbing out with `..`: refused, nothing written.
        let mut builder = tar::Builder::new(Vec::new());
        raw_entry(
            &mut builder,
            "../../escaped",
            tar::EntryType::Regular,
            "",
            b"x",
        );
        let climbing = base.join("climbing.tar");
        fs::write(&climbing, builder.into_inner().unwrap()).unwrap();
        let error = add_archive(&rootfs, &climbing, "/deep/dest").unwrap_err();
        assert!(
            error.message().starts_with("ADD failed: unpacking"),
            "{}",
            error.message()
        );
        assert!(!base.join("escaped").exists());
        assert!(!rootfs.join("escaped").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
