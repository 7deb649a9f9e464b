//! Support for chapter 02's tests: comparable snapshots of a directory
//! tree, overlay mount guards, and hand-made layer tars.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one path of a tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file: its size and the sha256 of its contents.
    File {
        size: u64,
        sha256: String,
    },
    Symlink {
        target: PathBuf,
    },
    CharDevice {
        major: u64,
        minor: u64,
    },
    BlockDevice {
        major: u64,
        minor: u64,
    },
    Fifo,
    Socket,
}

/// One path of a snapshot: everything compared, mtimes and xattrs only
/// when asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits, setuid/setgid/sticky included (not for symlinks).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// For a file with several names in the tree: the first of them (sorted),
    /// so that two trees with the same hardlink groups compare equal.
    pub hardlink_group: Option<String>,
    pub mtime: Option<i64>,
    pub xattrs: Option<BTreeMap<String, Vec<u8>>>,
}

/// How much a snapshot records.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotOptions {
    pub mtimes: bool,
    pub xattrs: bool,
}

/// A tree: relative path (no leading `/`) to what is there. The root
/// directory itself is not included.
pub type Tree = BTreeMap<String, Node>;

/// Paths, types, modes, owners, sizes, contents, symlink targets and
/// hardlink groups of everything under `root` (mtimes and xattrs not).
pub fn snapshot(root: &Path) -> Tree {
    snapshot_with(root, &[], SnapshotOptions::default())
}

/// Everything, mtimes and xattrs included, except the `excluded` relative
/// paths (and what is under them): for "nothing else changed" checks.
pub fn snapshot_all_except(root: &Path, excluded: &[&str]) -> Tree {
    snapshot_with(
        root,
        excluded,
        SnapshotOptions {
            mtimes: true,
            xattrs: true,
        },
    )
}

pub fn snapshot_with(root: &Path, excluded: &[&str], options: SnapshotOptions) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, "", excluded, options, &mut tree, &mut inodes);
    for mut names in inodes.into_values() {
        if names.len() > 1 {
            names.sort();
            for name in &names {
                tree.get_mut(name).unwrap().hardlink_group = Some(names[0].clone());
            }
        }
    }
    tree
}

fn walk(
    root: &Path,
    relative: &str,
    excluded: &[&str],
    options: SnapshotOptions,
    tree: &mut Tree,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) {
    let dir = root.join(relative);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("snapshot: reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = if relative.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{relative}/{}", name.to_string_lossy())
        };
        if excluded.contains(&rel.as_str()) {
            continue;
        }
        let path = root.join(&rel);
        let meta = path
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("snapshot: lstat {}: {e}", path.display()));
        let ft = meta.file_type();
        let dev = |rdev: u64| (libc::major(rdev) as u64, libc::minor(rdev) as u64);
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File {
                size: meta.len(),
                sha256: crate::sha256_file(&path),
            }
        } else if ft.is_symlink() {
            Kind::Symlink {
                target: std::fs::read_link(&path).unwrap(),
            }
        } else if ft.is_char_device() {
            let (major, minor) = dev(meta.rdev());
            Kind::CharDevice { major, minor }
        } else if ft.is_block_device() {
            let (major, minor) = dev(meta.rdev());
            Kind::BlockDevice { major, minor }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        };
        if !ft.is_dir() && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        tree.insert(
            rel.clone(),
            Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    meta.mode() & 0o7777
                },
                uid: meta.uid(),
                gid: meta.gid(),
                hardlink_group: None,
                mtime: options.mtimes.then(|| meta.mtime()),
                xattrs: options.xattrs.then(|| xattrs(&path)),
            },
        );
        if ft.is_dir() {
            walk(root, &rel, excluded, options, tree, inodes);
        }
    }
}

/// Every extended attribute of the path itself (not a symlink's target).
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is as long as we say; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    names.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let c_name = CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        value.truncate(len.max(0) as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    out
}

/// Asserts two trees are the same, listing every difference (not just the
/// first) so a failure says what is wrong.
#[track_caller]
pub fn assert_same_tree(ours: &Tree, reference: &Tree, what: &str) {
    let mut problems = Vec::new();
    for (path, node) in ours {
        match reference.get(path) {
            None => problems.push(format!("only in ours: {path} {node:?}")),
            Some(other) if other != node => problems.push(format!(
                "differs: {path}\n    ours: {node:?}\n  theirs: {other:?}"
            )),
            Some(_) => {}
        }
    }
    for (path, node) in reference {
        if !ours.contains_key(path) {
            problems.push(format!("only in theirs: {path} {node:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Is something mounted at `target` (per /proc/self/mountinfo)?
pub fn is_mount_point(target: &Path) -> bool {
    mountinfo_line(target).is_some()
}

/// The /proc/self/mountinfo line of the mount at `target`, if any.
pub fn mountinfo_line(target: &Path) -> Option<String> {
    let canonical = target.canonicalize().ok()?;
    let wanted = canonical.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .rev()
        .find(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
        .map(String::from)
}

/// One option (`lowerdir`, `upperdir`, …) of an overlay mount at `target`.
pub fn overlay_option(target: &Path, key: &str) -> Option<String> {
    let line = mountinfo_line(target)?;
    let (_, after) = line.split_once(" - ")?;
    let options = after.split(' ').nth(2)?;
    options
        .split(',')
        .find_map(|o| o.strip_prefix(&format!("{key}=")).map(String::from))
}

/// Unmounts a tree mounted by `ch02-layers mount` when dropped (also when
/// the test fails): `ch02-layers umount`, then `umount -l` if still there.
pub struct MountGuard {
    root: PathBuf,
    target: PathBuf,
    binary: String,
}

impl MountGuard {
    pub fn new(binary: &str, root: &Path, target: &Path) -> MountGuard {
        MountGuard {
            root: root.to_path_buf(),
            target: target.to_path_buf(),
            binary: binary.to_string(),
        }
    }

    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if !is_mount_point(&self.target) {
            return;
        }
        let _ = Command::new(crate::bin(&self.binary))
            .arg("umount")
            .arg(&self.target)
            .env("CRABBOX_ROOT", &self.root)
            .output();
        for _ in 0..10 {
            if !is_mount_point(&self.target) {
                return;
            }
            let _ = Command::new("umount").arg("-l").arg(&self.target).output();
        }
    }
}

/// Builds a layer tar entry by entry, including entries the `tar` crate's
/// builder refuses (names with `..`, raw link names).
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        LayerTar::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size);
        header
    }

    /// Appends a header whose name (and link name) bytes are set directly,
    /// whatever they say; names over 100 bytes use a GNU long-name entry.
    fn raw(&mut self, mut header: tar::Header, name: &str, link: Option<&str>, data: &[u8]) {
        if name.len() >= 100 {
            self.long_entry(tar::EntryType::GNULongName, name);
        }
        if let Some(link) = link {
            if link.len() >= 100 {
                self.long_entry(tar::EntryType::GNULongLink, link);
            }
        }
        {
            let gnu = header.as_gnu_mut().expect("a GNU header");
            gnu.name = [0; 100];
            let n = name.len().min(99);
            gnu.name[..n].copy_from_slice(&name.as_bytes()[..n]);
            if let Some(link) = link {
                gnu.linkname = [0; 100];
                let n = link.len().min(99);
                gnu.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
            }
        }
        header.set_cksum();
        self.builder.append(&header, data).expect("append to a Vec");
    }

    fn long_entry(&mut self, kind: tar::EntryType, value: &str) {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        let mut header = Self::header(kind, 0o644, data.len() as u64);
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..13].copy_from_slice(b"././@LongLink");
        }
        header.set_cksum();
        self.builder.append(&header, &data[..]).unwrap();
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.file_mode(name, data, 0o644);
        self
    }

    /// A regular file with a given mode (e.g. 0o755 for a program).
    pub fn file_with_mode(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        self.file_mode(name, data, mode);
        self
    }

    fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) {
        let header = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.raw(header, name, None, data);
    }

    pub fn dir(mut self, name: &str, mode: u32) -> Self {
        let header = Self::header(tar::EntryType::Directory, mode, 0);
        self.raw(header, name, None, &[]);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.raw(header, name, Some(target), &[]);
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        let header = Self::header(tar::EntryType::Link, 0o644, 0);
        self.raw(header, name, Some(target), &[]);
        self
    }

    pub fn device(mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut header = Self::header(kind, 0o666, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.raw(header, name, None, &[]);
        self
    }

    /// A regular file whose name comes from a PAX `path` record.
    pub fn pax_file(mut self, pax_path: &str, data: &[u8]) -> Self {
        let record = {
            let body = format!(" path={pax_path}\n");
            // The length counts itself.
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            format!("{len}{body}")
        };
        let header = Self::header(tar::EntryType::XHeader, 0o644, record.len() as u64);
        self.raw(header, "PaxHeader", None, record.as_bytes());
        self.file_mode("placeholder", data, 0o644);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish the tar")
    }
}

/// Unmounts (lazily) whatever the test mounted at a path when dropped.
pub struct UnmountGuard(pub PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        for _ in 0..10 {
            if !is_mount_point(&self.0) {
                return;
            }
            let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        }
    }
}

/// A docker-archive (what `load` reads) of one image made of `layers`.
pub fn docker_archive(tag: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", crate::sha256_hex(l)))
        .collect();
    let history: Vec<serde_json::Value> = (0..layers.len())
        .map(|i| serde_json::json!({"created_by": format!("COPY layer-{i:02}.txt /")}))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": crate::fixtures().manifest["host_architecture"],
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap();
    let config_name = format!("blobs/sha256/{}", crate::sha256_hex(&config));
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", crate::sha256_hex(l)))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": layer_names,
    }]))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("manifest.json", &manifest);
    add(&config_name, &config);
    for (name, layer) in layer_names.iter().zip(layers) {
        add(name, layer);
    }
    builder.into_inner().unwrap()
}
