//! Where COPY and ADD read from: the build context, or another stage.
//!
//! `COPY src/*.rs /app/` names files of the **build context**, the directory
//! given to `build` (`.` in `docker build .`). Three rules keep a build
//! honest there:
//!
//! - nothing outside the context can be named: `../secret` is refused, and
//!   `/etc/passwd` means `etc/passwd` *inside* the context;
//! - a symlink in the context cannot be used as a way out: a path that goes
//!   through `lib -> /usr/lib` is refused, while a symlink named as the
//!   source itself is copied as a symlink, never followed;
//! - what `.dockerignore` leaves out does not exist (see [`crate::ignore`]).
//!
//! `COPY --from=builder /out/app /usr/bin/` reads instead from another
//! stage's (or image's) **root filesystem**. There the paths are the image's
//! own: resolved as if that directory were `/`, so an absolute symlink such
//! as `/lib -> /usr/lib` leads to the image's `/usr/lib`, never the host's.
//!
//! Both kinds answer the same three questions: which sources does a COPY
//! source name ([`Context::resolve`], globs included), what lies below each
//! one ([`Context::entries`]), and a checksum of all that for the build
//! cache ([`Context::checksum`]).

use crate::ignore::{glob_match, Ignore};
use ch01_images::digest::{Digest, DigestWriter};
use ch01_images::error::{io_error, Error, Result};
use ch02_layers::contain::resolve_in_root;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one path before we call it a loop (Linux: 40).
const MAX_SYMLINKS: usize = 40;

/// A directory COPY can read from.
#[derive(Clone, Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The build context on the host: symlinks leaving it are refused.
    BuildContext,
    /// A root filesystem: resolved as if it were `/`, symlinks kept inside.
    RootFilesystem,
}

/// One source a COPY names, found in the context.
#[derive(Clone, Debug)]
pub struct Source {
    /// Where it is within the context (symlinks on the way resolved).
    pub relative: PathBuf,
    /// The name the Dockerfile's path (or glob) gave it: a file copied into
    /// a directory takes this name, even when a root filesystem's symlink
    /// led elsewhere (`libc.so.6 -> libc-2.36.so` copies as `libc.so.6`).
    /// Empty for the whole context (`COPY . /app`).
    pub name: OsString,
    /// The host path to read.
    pub path: PathBuf,
    /// What it is, as `lstat` says: a symlink is not followed.
    pub metadata: fs::Metadata,
}

impl Source {
    /// A directory source copies its contents; anything else copies itself.
    pub fn is_dir(&self) -> bool {
        self.metadata.is_dir()
    }
}

/// One file, directory, symlink (or special file) at or below a source.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it is below the source; empty for the source itself.
    pub relative: PathBuf,
    /// The host path to read.
    pub path: PathBuf,
    /// What it is, as `lstat` says: a symlink is not followed.
    pub metadata: fs::Metadata,
}

impl Context {
    /// The build context in `dir`, with its `.dockerignore` rules.
    pub fn build_context(dir: &Path, ignore: Ignore) -> Result<Context> {
        // The real path, symlinks resolved: a symlink is "inside" when its
        // target is under this path.
        let root = fs::canonicalize(dir).map_err(|e| {
            Error::new(format!(
                "unable to prepare context: {}: {e} — give build a directory that exists",
                dir.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(Error::new(format!(
                "unable to prepare context: {} is not a directory — give build the directory holding the files to copy",
                dir.display()
            )));
        }
        Ok(Context {
            root,
            ignore,
            kind: Kind::BuildContext,
        })
    }

    /// The mounted root filesystem of a stage or an image (`COPY --from`).
    /// A source path is the image's own: every symlink on it, the last one
    /// included, is followed as if `dir` were `/` (as buildkit does), and
    /// no ignore rules apply.
    pub fn root_filesystem(dir: &Path) -> Context {
        Context {
            root: fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
            ignore: Ignore::none(),
            kind: Kind::RootFilesystem,
        }
    }

    /// The directory this context reads from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ANCHOR: resolve
    /// The sources one COPY source names, as written in the Dockerfile
    /// (variables already substituted), sorted. Any component may be a glob
    /// (`src/*.rs`, `conf?/[ab]*`): it is matched against the names in the
    /// directories found so far, one component after the other.
    pub fn resolve(&self, pattern: &str) -> Result<Vec<Source>> {
        let parts = self.pattern_parts(pattern)?;
        // Paths found so far, relative to the root, each with the name it
        // was found by; before the last step, every one of them is a real
        // directory (symlinks already followed).
        let mut found = vec![(PathBuf::new(), OsString::new())];
        for (i, part) in parts.iter().enumerate() {
            let is_last = i + 1 == parts.len();
            let mut next = Vec::new();
            for (dir, _) in &found {
                let (names, from_glob) = self.names_in(dir, part)?;
                for name in names {
                    let step = self.step(&dir.join(&name), is_last, pattern);
                    // A symlink leaving the context is an error when the
                    // Dockerfile names it, and simply no match for a glob.
                    let step = if from_glob {
                        step.unwrap_or(None)
                    } else {
                        step?
                    };
                    if let Some(path) = step {
                        next.push((path, name));
                    }
                }
            }
            found = next;
        }
        if found.is_empty() {
            return Err(Error::new(format!(
                "COPY failed: file not found in build context or excluded by .dockerignore: {pattern}"
            )));
        }
        found.sort();
        // Two globs may reach one file through symlinks: copied once.
        found.dedup_by(|a, b| a.0 == b.0);
        found
            .into_iter()
            .map(|(relative, name)| {
                let path = self.root.join(&relative);
                let metadata = path
                    .symlink_metadata()
                    .map_err(|e| io_error("reading", &path, e))?;
                Ok(Source {
                    relative,
                    name,
                    path,
                    metadata,
                })
            })
            .collect()
    }
    // ANCHOR_END: resolve

    /// The components of a source path, cleaned as docker does: `/x` is
    /// `x`, `a/../b` is `b`. Climbing above the top is refused in the build
    /// context; in a root filesystem `/..` is `/`, as in the kernel.
    fn pattern_parts(&self, pattern: &str) -> Result<Vec<String>> {
        let mut parts: Vec<String> = Vec::new();
        for part in pattern.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() && self.kind == Kind::BuildContext {
                        return Err(Error::new(format!(
                            "COPY failed: forbidden path outside the build context: {pattern}"
                        )));
                    }
                }
                _ => parts.push(part.to_string()),
            }
        }
        Ok(parts)
    }

    /// The names in the directory `dir` (relative to the root) that the
    /// component `part` names: itself, or what its glob matches (and then
    /// says so).
    fn names_in(&self, dir: &Path, part: &str) -> Result<(Vec<OsString>, bool)> {
        if !part.contains(['*', '?', '[', '\\']) {
            return Ok((vec![OsString::from(part)], false));
        }
        let host_dir = self.root.join(dir);
        let mut names = Vec::new();
        for child in fs::read_dir(&host_dir).map_err(|e| io_error("reading", &host_dir, e))? {
            let name = child
                .map_err(|e| io_error("reading", &host_dir, e))?
                .file_name();
            if glob_match(part, &name.to_string_lossy()) {
                names.push(name);
            }
        }
        Ok((names, true))
    }

    /// One step of [`Context::resolve`]: what `relative` is, if it counts.
    /// Before the last step it must lead to a directory (through symlinks
    /// that stay inside); the last step keeps anything that exists. What
    /// the ignore rules leave out is not there.
    fn step(&self, relative: &Path, is_last: bool, pattern: &str) -> Result<Option<PathBuf>> {
        let resolved = match self.kind {
            Kind::BuildContext => {
                let Ok(metadata) = self.root.join(relative).symlink_metadata() else {
                    return Ok(None);
                };
                if metadata.is_symlink() && !is_last {
                    self.follow_inside(relative, pattern)?
                } else {
                    relative.to_path_buf()
                }
            }
            Kind::RootFilesystem => {
                let parts: Vec<OsString> = relative.iter().map(|p| p.to_os_string()).collect();
                let mut path = resolve_in_root(&self.root, &parts, true)?;
                if path.symlink_metadata().is_err() && is_last {
                    // A dangling symlink as the source: copied as it is.
                    path = resolve_in_root(&self.root, &parts, false)?;
                }
                if path.symlink_metadata().is_err() {
                    return Ok(None);
                }
                path.strip_prefix(&self.root)
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            }
        };
        let is_dir = self
            .root
            .join(&resolved)
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir());
        if !is_last && !is_dir {
            return Ok(None);
        }
        let as_text = resolved.to_string_lossy();
        let ignored = self.ignore.excludes(&as_text);
        // An excluded directory still counts if a `!` line may put back
        // something below it.
        if ignored && !(is_dir && self.ignore.may_include_below(&as_text)) {
            return Ok(None);
        }
        Ok(Some(resolved))
    }

    // ANCHOR: follow_inside
    /// Follows the symlink at `link` (relative to the context root), and any
    /// symlink its target goes through, as the kernel would, but refusing
    /// every step that leaves the context. Returns where it leads, relative
    /// to the root.
    fn follow_inside(&self, link: &Path, pattern: &str) -> Result<PathBuf> {
        // Where we are, and what is left to walk (the next component last).
        let mut resolved: Vec<OsString> = link.iter().map(|p| p.to_os_string()).collect();
        let mut pending: Vec<OsString> = Vec::new();
        // The last link followed: the one to blame when we end up outside.
        let mut blame = (PathBuf::new(), PathBuf::new());
        let leaves = |(link, target): &(PathBuf, PathBuf)| {
            Error::new(format!(
                "COPY failed: {pattern} goes through a symbolic link that leaves the build context ({} -> {})",
                link.display(),
                target.display()
            ))
        };
        let mut followed = 0;
        loop {
            let here: PathBuf = resolved.iter().collect();
            let host_path = self.root.join(&here);
            if host_path.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(Error::new(format!(
                        "COPY failed: {pattern}: too many levels of symbolic links — look for a symlink loop in the build context"
                    )));
                }
                let target = fs::read_link(&host_path)
                    .map_err(|e| io_error("reading symlink", &host_path, e))?;
                blame = (here, target);
                let target = &blame.1;
                resolved.pop(); // the link is replaced by its target
                let walk = if target.is_absolute() {
                    // An absolute target is a host path: inside only if it
                    // is under the context's real path.
                    resolved.clear();
                    target
                        .strip_prefix(&self.root)
                        .map_err(|_| leaves(&blame))?
                } else {
                    target.as_path()
                };
                for component in walk.components().rev() {
                    match component {
                        Component::Normal(name) => pending.push(name.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            // The next name goes one down; a `..` goes one up, but never
            // above the context root.
            loop {
                match pending.pop() {
                    None => return Ok(resolved.iter().collect()),
                    Some(part) if part == ".." => {
                        if resolved.pop().is_none() {
                            return Err(leaves(&blame));
                        }
                    }
                    Some(part) => {
                        resolved.push(part);
                        break;
                    }
                }
            }
        }
    }
    // ANCHOR_END: follow_inside

    /// Everything a source stands for: the source itself (relative path
    /// empty), then, for a directory, every entry below it, sorted by name,
    /// each directory before its contents. Symlinks are entries, never
    /// followed. Ignored entries are left out, except a directory holding
    /// entries a `!` line put back.
    pub fn entries(&self, source: &Source) -> Result<Vec<Entry>> {
        let mut entries = vec![Entry {
            relative: PathBuf::new(),
            path: source.path.clone(),
            metadata: source.metadata.clone(),
        }];
        if source.is_dir() {
            self.walk(&source.path, &source.relative, Path::new(""), &mut entries)?;
        }
        Ok(entries)
    }

    /// Adds the entries below `dir` (at `in_context` in the context, at
    /// `below` below the source) to `entries`.
    fn walk(
        &self,
        dir: &Path,
        in_context: &Path,
        below: &Path,
        entries: &mut Vec<Entry>,
    ) -> Result<()> {
        let mut names = Vec::new();
        for child in fs::read_dir(dir).map_err(|e| io_error("reading", dir, e))? {
            names.push(child.map_err(|e| io_error("reading", dir, e))?.file_name());
        }
        // Sorted, so that two builds of the same files agree (checksums).
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let metadata = path
                .symlink_metadata()
                .map_err(|e| io_error("reading", &path, e))?;
            let in_context = in_context.join(&name);
            let as_text = in_context.to_string_lossy();
            let ignored = self.ignore.excludes(&as_text);
            let entry = Entry {
                relative: below.join(&name),
                path: path.clone(),
                metadata,
            };
            if !entry.metadata.is_dir() {
                if !ignored {
                    entries.push(entry);
                }
                continue;
            }
            if ignored && !self.ignore.may_include_below(&as_text) {
                continue; // not even read: this is what makes .dockerignore fast
            }
            let below = entry.relative.clone();
            entries.push(entry);
            let count = entries.len();
            self.walk(&path, &in_context, &below, entries)?;
            if ignored && entries.len() == count {
                entries.pop(); // ignored, and nothing below it was put back
            }
        }
        Ok(())
    }

    // ANCHOR: checksum
    /// A digest of everything these sources would copy, for the build
    /// cache: each entry's path, kind, mode, owner, and content (the sha256
    /// of a file's bytes, a symlink's target). The modification time is
    /// left out on purpose: `touch` or a fresh `git clone` must not make
    /// every COPY run again.
    pub fn checksum(&self, sources: &[Source]) -> Result<Digest> {
        let mut hash = DigestWriter::new(io::sink());
        for source in sources {
            for entry in self.entries(source)? {
                let kind = entry.metadata.file_type();
                let (kind_name, content) = if kind.is_file() {
                    ("file", file_digest(&entry.path)?.to_string().into_bytes())
                } else if kind.is_dir() {
                    ("dir", Vec::new())
                } else if kind.is_symlink() {
                    let target = fs::read_link(&entry.path)
                        .map_err(|e| io_error("reading symlink", &entry.path, e))?;
                    ("symlink", target.into_os_string().into_vec())
                } else {
                    continue; // devices, fifos, sockets: COPY skips them
                };
                let mut path = source.relative.clone().into_os_string();
                if !entry.relative.as_os_str().is_empty() {
                    path.push("/");
                    path.push(&entry.relative);
                }
                let meta = &entry.metadata;
                let header = format!(
                    "{kind_name}\0{:o}\0{}\0{}\0",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                );
                // Every field ends with a NUL, which no file name holds: no
                // two different listings can hash the same bytes.
                let written = hash
                    .write_all(path.as_bytes())
                    .and_then(|()| hash.write_all(b"\0"))
                    .and_then(|()| hash.write_all(header.as_bytes()))
                    .and_then(|()| hash.write_all(&content))
                    .and_then(|()| hash.write_all(b"\0"));
                written.map_err(|e| io_error("hashing", &entry.path, e))?;
            }
        }
        Ok(hash.finish().0)
    }
    // ANCHOR_END: checksum
}

/// The sha256 of a file's bytes, read in a stream.
fn file_digest(path: &Path) -> Result<Digest> {
    let mut file = fs::File::open(path).map_err(|e| io_error("reading", path, e))?;
    let mut hash = DigestWriter::new(io::sink());
    io::copy(&mut file, &mut hash).map_err(|e| io_error("reading", path, e))?;
    Ok(hash.finish().0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("crabbox-context-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn relatives(sources: &[Source]) -> Vec<String> {
        sources
            .iter()
            .map(|s| s.relative.to_string_lossy().into_owned())
            .collect()
    }

    fn sample_context(name: &str) -> PathBuf {
        let dir = scratch(name);
        for file in [
            "src/b.rs",
            "src/a.rs",
            "src/notes.txt",
            "conf1/a.conf",
            "conf2/b.conf",
            "conf2/c.conf",
            "conf3/a.conf",
            "README.md",
        ] {
            write(&dir, file, file);
        }
        dir
    }

    #[test]
    fn globs_expand_in_any_component() {
        let dir = sample_context("globs");
        let context = Context::build_context(&dir, Ignore::none()).unwrap();
        assert_eq!(
            relatives(&context.resolve("src/*.rs").unwrap()),
            ["src/a.rs", "src/b.rs"]
        );
        assert_eq!(
            relatives(&context.resolve("conf?/[ab]*").unwrap()),
            ["conf1/a.conf", "conf2/b.conf", "conf3/a.conf"]
        );
        assert_eq!(
            relatives(&context.resolve("conf[!3]/*.conf").unwrap()),
            ["conf1/a.conf", "conf2/b.conf", "conf2/c.conf"]
        );
        // An absolute source is taken inside the context; `.` is all of it.
        assert_eq!(
            relatives(&context.resolve("/README.md").unwrap()),
            ["README.md"]
        );
        assert_eq!(
            relatives(&context.resolve("./src/../README.md").unwrap()),
            ["README.md"]
        );
        assert_eq!(relatives(&context.resolve(".").unwrap()), [""]);
        assert!(context.resolve("src").unwrap()[0].is_dir());
        for missing in ["*.go", "nothing.txt", "README.md/x"] {
            assert_eq!(
                context.resolve(missing).unwrap_err().message(),
                format!("COPY failed: file not found in build context or excluded by .dockerignore: {missing}")
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ignored_files_do_not_exist() {
        let dir = sample_context("ignored");
        let ignore = Ignore::parse("src/b.rs\nconf*\n!conf2/c.conf\n");
        let context = Context::build_context(&dir, ignore).unwrap();
        assert_eq!(
            relatives(&context.resolve("src/*.rs").unwrap()),
            ["src/a.rs"]
        );
        assert!(context.resolve("src/b.rs").is_err());
        assert_eq!(
            relatives(&context.resolve("conf*/*").unwrap()),
            ["conf2/c.conf"]
        );

        let root = &context.resolve(".").unwrap()[0];
        let listed: Vec<String> = context
            .entries(root)
            .unwrap()
            .iter()
            .map(|e| e.relative.to_string_lossy().into_owned())
            .collect();
        // conf2 stays, for the one file put back in it; conf1 and conf3 go.
        assert_eq!(
            listed,
            [
                "",
                "README.md",
                "conf2",
                "conf2/c.conf",
                "src",
                "src/a.rs",
                "src/notes.txt"
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_outside_the_context_can_be_named() {
        let dir = sample_context("outside");
        let outside = scratch("outside-target");
        write(&outside, "secret", "secret");
        symlink(&outside, dir.join("out")).unwrap();
        symlink("../../..", dir.join("src/up")).unwrap();
        symlink("src", dir.join("inner")).unwrap();
        symlink(dir.join("src"), dir.join("absolute-inner")).unwrap();
        let context = Context::build_context(&dir, Ignore::none()).unwrap();
        for pattern in ["../x", "src/../../x"] {
            assert_eq!(
                context.resolve(pattern).unwrap_err().message(),
                format!("COPY failed: forbidden path outside the build context: {pattern}")
            );
        }
        assert_eq!(
            context.resolve("out/secret").unwrap_err().message(),
            format!(
                "COPY failed: out/secret goes through a symbolic link that leaves the build context (out -> {})",
                outside.display()
            )
        );
        assert_eq!(
            context.resolve("src/up/etc/passwd").unwrap_err().message(),
            "COPY failed: src/up/etc/passwd goes through a symbolic link that leaves the build context (src/up -> ../../..)"
        );
        // Symlinks that stay inside lead where they point.
        assert_eq!(
            relatives(&context.resolve("inner/a.rs").unwrap()),
            ["src/a.rs"]
        );
        assert_eq!(
            relatives(&context.resolve("absolute-inner/b.rs").unwrap()),
            ["src/b.rs"]
        );
        // The source itself is a symlink: kept as one, whatever it points to.
        let link = &context.resolve("out").unwrap()[0];
        assert!(link.metadata.is_symlink());
        assert_eq!(link.path, context.root().join("out"));
        assert_eq!(context.entries(link).unwrap().len(), 1);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_root_filesystem_keeps_its_symlinks_inside() {
        let dir = scratch("rootfs");
        write(&dir, "usr/lib/libc.so", "libc");
        symlink("/usr/lib", dir.join("lib")).unwrap();
        symlink("/nowhere", dir.join("dangling")).unwrap();
        let context = Context::root_filesystem(&dir);
        assert_eq!(
            relatives(&context.resolve("/lib/libc.so").unwrap()),
            ["usr/lib/libc.so"]
        );
        assert_eq!(relatives(&context.resolve("/lib").unwrap()), ["usr/lib"]);
        assert_eq!(context.resolve("/lib").unwrap()[0].name, "lib");
        assert_eq!(
            relatives(&context.resolve("/../../lib/*.so").unwrap()),
            ["usr/lib/libc.so"]
        );
        assert!(context.resolve("/dangling").unwrap()[0]
            .metadata
            .is_symlink());
        assert!(context.resolve("/etc/passwd").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_checksum_ignores_mtime_but_not_content_or_mode() {
        let dir = sample_context("checksum");
        symlink("a.rs", dir.join("src/link")).unwrap();
        let context = Context::build_context(&dir, Ignore::none()).unwrap();
        let sum = || context.checksum(&context.resolve("src").unwrap()).unwrap();
        let first = sum();
        assert_eq!(sum(), first, "deterministic");

        let file = fs::File::options()
            .write(true)
            .open(dir.join("src/a.rs"))
            .unwrap();
        file.set_modified(std::time::UNIX_EPOCH).unwrap();
        drop(file);
        assert_eq!(sum(), first, "touch changes nothing");

        fs::set_permissions(dir.join("src/a.rs"), fs::Permissions::from_mode(0o755)).unwrap();
        let executable = sum();
        assert_ne!(executable, first, "the mode counts");

        fs::write(dir.join("src/a.rs"), "changed").unwrap();
        assert_ne!(sum(), executable, "the content counts");

        fs::remove_file(dir.join("src/link")).unwrap();
        symlink("b.rs", dir.join("src/link")).unwrap();
        let relinked = sum();
        fs::remove_file(dir.join("src/link")).unwrap();
        symlink("a.rs", dir.join("src/link")).unwrap();
        assert_ne!(relinked, sum(), "a symlink's target counts");
        fs::remove_dir_all(&dir).unwrap();
    }
}
