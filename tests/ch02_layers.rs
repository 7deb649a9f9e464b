//! Chapter 02 end to end: `ch02-layers` driven as a learner would (unpack,
//! mount, diff, layers, history) against the fixture registry, compared with
//! `umoci unpack`; and `apply_layer` fed hostile layer tars.

use ch02_layers::unpack::{apply_layer, Mode};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use support::layers::{
    assert_same_tree, docker_archive, overlay_option, snapshot, snapshot_all_except, Kind,
    LayerTar, MountGuard, Tree,
};
use support::{fixtures, sh, Engine, Registry, TempDir};

const BIN: &str = "ch02-layers";

fn fixture_registry() -> Registry {
    Registry::serve_fixtures(&fixtures().registry_storage())
}

/// Pulls `layered` into the engine; returns its full reference.
fn pull_layered(engine: &Engine, registry: &Registry) -> String {
    let reference = format!("{}/layered:latest", registry.addr());
    engine.run(BIN, &["pull", "-q", &reference]).ok();
    reference
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// `umoci unpack` of the image `reference` from the engine's store; returns
/// the snapshot of its rootfs (umoci's config.json, umoci.json and mtree
/// file live beside rootfs/ and are not compared).
fn umoci_tree(engine: &Engine, reference: &str, work: &TempDir) -> Tree {
    let bundle = work.join("umoci-bundle");
    let out = sh(&format!(
        "umoci unpack --image '{}:{reference}' '{}'",
        engine.root.join("images").display(),
        bundle.display()
    ));
    assert_eq!(out.code, 0, "umoci unpack failed: {}", out.stderr);
    snapshot(&bundle.join("rootfs"))
}

/// What the fixture documents about the final tree of `layered`.
fn assert_layered_content(tree: &Tree) {
    let file = |path: &str, content: &[u8]| {
        let node = tree
            .get(path)
            .unwrap_or_else(|| panic!("{path} is missing"));
        assert_eq!(
            node.kind,
            Kind::File {
                size: content.len() as u64,
                sha256: sha256_hex(content)
            },
            "{path}"
        );
        node.clone()
    };
    file("etc/motd", b"layered v2\n");
    file("data/new.txt", b"new data\n");
    assert!(!tree.contains_key("etc/obsolete.conf"));
    assert!(!tree.contains_key("data/old.txt"));
    assert!(!tree.contains_key("data/sub"));
    assert_eq!(tree["opt"].kind, Kind::Dir);
    assert!(!tree.keys().any(|k| k.starts_with("opt/")));
    let tool = file("app/bin/tool", b"#!/bin/sh\necho tool\n");
    assert_eq!(tool.mode, 0o755);
    assert_eq!(tool.hardlink_group.as_deref(), Some("app/bin/tool"));
    assert_eq!(
        tree["app/bin/tool-hardlink"].hardlink_group.as_deref(),
        Some("app/bin/tool")
    );
    assert_eq!(file("app/bin/suid", b"#!/bin/sh\necho suid\n").mode, 0o4755);
    assert_eq!(
        tree["app/current"].kind,
        Kind::Symlink {
            target: "bin/tool".into()
        }
    );
    assert_eq!(
        tree["app/motd"].kind,
        Kind::Symlink {
            target: "/etc/motd".into()
        }
    );
    let owned = file("home/user/owned.txt", b"owned by 1000\n");
    assert_eq!((owned.uid, owned.gid), (1000, 1000));
    assert_eq!((tree["home/user"].uid, tree["home/user"].gid), (1000, 1000));
    assert!(tree.keys().any(|k| k.ends_with("/long-file.txt")));
    assert!(tree.keys().any(|k| k.ends_with("-needs-a-pax-header.txt")));
    assert_eq!(tree["tmp"].mode, 0o1777);
    assert_eq!(tree["root"].mode, 0o700);
}

/// The mount directory (`ROOT/mounts/<id>`) of the tree mounted at `target`.
fn mount_dir_of(engine: &Engine, target: &Path) -> PathBuf {
    let target = target.canonicalize().unwrap();
    for entry in fs::read_dir(engine.root.join("mounts")).unwrap().flatten() {
        let Ok(bytes) = fs::read(entry.path().join("mount.json")) else {
            continue;
        };
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if record["target"].as_str() == Some(path_str(&target)) {
            return entry.path();
        }
    }
    panic!("no mount record for {}", target.display());
}

/// Mounts `reference` at a new directory `name` of `work`; the guard
/// unmounts it however the test ends.
fn mount(engine: &Engine, reference: &str, work: &TempDir, name: &str) -> MountGuard {
    let target = work.join(name);
    fs::create_dir_all(&target).unwrap();
    let guard = MountGuard::new(BIN, engine.root.path(), &target);
    let out = engine.run(BIN, &["mount", reference, path_str(&target)]);
    let stdout = out.ok();
    assert!(stdout.starts_with("mounted "), "{stdout}");
    assert!(support::layers::is_mount_point(&target));
    guard
}

/// The unpacked layer directories under ROOT/layers (by name), failing on
/// any leftover temporary directory.
fn layer_dirs(engine: &Engine) -> BTreeMap<String, u64> {
    let mut dirs = BTreeMap::new();
    let Ok(entries) = fs::read_dir(engine.root.join("layers")) else {
        return dirs;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "leftover {name} in ROOT/layers");
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.is_dir() && name != "l" {
            dirs.insert(name, meta.ino());
        }
    }
    dirs
}

fn diff_ids(engine: &Engine, reference: &str) -> Vec<String> {
    let out = engine.run(BIN, &["inspect", reference]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    json[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no RootFS.Layers in inspect: {json}"))
        .iter()
        .map(|d| {
            d.as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1, 2: unpack and mount give umoci's tree
// ---------------------------------------------------------------------------

#[test]
fn unpack_gives_the_tree_umoci_unpack_gives() {
    if !support::require_root("unpack_gives_the_tree_umoci_unpack_gives") {
        return;
    }
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let work = TempDir::new("ch02-unpack");
    let ours = work.join("flat");
    engine
        .run(BIN, &["unpack", &reference, path_str(&ours)])
        .ok();
    let ours = snapshot(&ours);
    assert_layered_content(&ours);
    let theirs = umoci_tree(&engine, &reference, &work);
    assert_same_tree(&ours, &theirs, "ch02-layers unpack vs umoci unpack");
    // unpack refuses a directory that is not empty.
    let out = engine.run(BIN, &["unpack", &reference, path_str(work.path())]);
    let line = out.fails_with(125);
    assert!(line.contains("not empty"), "{line}");
}

#[test]
fn overlay_mount_shows_the_tree_umoci_unpack_gives() {
    if !support::require_root("overlay_mount_shows_the_tree_umoci_unpack_gives") {
        return;
    }
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let work = TempDir::new("ch02-mount");
    let theirs = umoci_tree(&engine, &reference, &work);
    let mounted = mount(&engine, &reference, &work, "merged");
    assert!(overlay_option(mounted.target(), "lowerdir").is_some());
    let ours = snapshot(mounted.target());
    assert_layered_content(&ours);
    assert_same_tree(&ours, &theirs, "overlay mount vs umoci unpack");
    // umount removes the mount and its writable layer.
    let mount_dir = mount_dir_of(&engine, mounted.target());
    let out = engine.run(BIN, &["umount", path_str(mounted.target())]);
    assert!(out.ok().starts_with("unmounted "), "{}", out.stdout);
    assert!(!support::layers::is_mount_point(mounted.target()));
    assert!(!mount_dir.exists(), "{} is left", mount_dir.display());
}

// ---------------------------------------------------------------------------
// 3: layers are unpacked once and shared; writes stay in each upper dir
// ---------------------------------------------------------------------------

#[test]
fn two_mounts_share_the_layers_and_keep_their_writes_apart() {
    if !support::require_root("two_mounts_share_the_layers_and_keep_their_writes_apart") {
        return;
    }
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let ids = diff_ids(&engine, &reference);
    assert_eq!(ids.len(), 6);
    let work = TempDir::new("ch02-share");
    let a = mount(&engine, &reference, &work, "a");
    let after_first = layer_dirs(&engine);
    let b = mount(&engine, &reference, &work, "b");
    let after_second = layer_dirs(&engine);
    // One directory per diff ID, made by the first mount, untouched by the second.
    let mut expected: Vec<String> = ids.clone();
    expected.sort();
    expected.dedup();
    assert_eq!(after_first.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(
        after_first, after_second,
        "the second mount re-unpacked a layer"
    );
    // Both mounts use the same lower dirs, top layer first, and their own upper dirs.
    let lower_a = overlay_option(a.target(), "lowerdir").expect("lowerdir of a");
    let lower_b = overlay_option(b.target(), "lowerdir").expect("lowerdir of b");
    assert_eq!(lower_a, lower_b);
    let lowers: Vec<&str> = lower_a.split(':').collect();
    assert_eq!(lowers.len(), 6, "{lower_a}");
    let layers = engine.root.join("layers");
    for (lower, id) in lowers.iter().zip(ids.iter().rev()) {
        let lower = if Path::new(lower).is_absolute() {
            PathBuf::from(lower)
        } else {
            layers.join(lower)
        };
        assert_eq!(
            fs::metadata(&lower).unwrap().ino(),
            after_first[id],
            "{} is not the layer {id}",
            lower.display()
        );
    }
    let dir_a = mount_dir_of(&engine, a.target());
    let dir_b = mount_dir_of(&engine, b.target());
    assert_ne!(dir_a, dir_b);
    let upper_a = overlay_option(a.target(), "upperdir").unwrap();
    let upper_b = overlay_option(b.target(), "upperdir").unwrap();
    assert_eq!(Path::new(&upper_a), dir_a.join("upper"));
    assert_eq!(Path::new(&upper_b), dir_b.join("upper"));
    // The same file of a lower layer is the same inode in both mounts.
    let busybox_layer = layers.join(&ids[0]).join("bin/busybox");
    let ino = fs::metadata(&busybox_layer).unwrap().ino();
    assert_eq!(
        fs::metadata(a.target().join("bin/busybox")).unwrap().ino(),
        ino
    );
    assert_eq!(
        fs::metadata(b.target().join("bin/busybox")).unwrap().ino(),
        ino
    );
    // Writes in a: seen in a, in a's upper dir only.
    let layers_before = snapshot(&layers);
    fs::write(a.target().join("etc/motd"), "changed in a\n").unwrap();
    fs::write(a.target().join("only-in-a.txt"), "a\n").unwrap();
    fs::remove_file(a.target().join("etc/passwd")).unwrap();
    assert_eq!(
        fs::read_to_string(a.target().join("etc/motd")).unwrap(),
        "changed in a\n"
    );
    assert_eq!(
        fs::read_to_string(b.target().join("etc/motd")).unwrap(),
        "layered v2\n"
    );
    assert!(!b.target().join("only-in-a.txt").exists());
    assert!(b.target().join("etc/passwd").exists());
    assert_eq!(
        fs::read_to_string(dir_a.join("upper/etc/motd")).unwrap(),
        "changed in a\n"
    );
    assert!(dir_a.join("upper/only-in-a.txt").exists());
    let whiteout = fs::symlink_metadata(dir_a.join("upper/etc/passwd")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert_eq!(snapshot(&dir_b.join("upper")), Tree::new(), "b's upper dir");
    assert_same_tree(&snapshot(&layers), &layers_before, "the shared layers");
}

// ---------------------------------------------------------------------------
// 4: hostile layers: contained or refused, never written outside
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Applied; everything landed inside the layer directory.
    Contained,
    /// apply_layer returned an error (one line).
    Refused,
}

/// One hostile scenario: its layers are applied in order to `S/layer`; the
/// expectation is for the last one (the ones before must apply).
struct Case {
    name: &'static str,
    layers: Vec<Vec<u8>>,
    modes: &'static [Mode],
    expect: Expect,
    /// Extra checks on a contained result: (layer dir, absolute outside dir).
    check: Option<fn(&Path, &Path)>,
}

const BOTH: &[Mode] = &[Mode::Overlay, Mode::Flat];

fn case(name: &'static str, expect: Expect, layers: Vec<LayerTar>) -> Case {
    Case {
        name,
        layers: layers.into_iter().map(LayerTar::into_bytes).collect(),
        modes: BOTH,
        expect,
        check: None,
    }
}

impl Case {
    fn check(mut self, check: fn(&Path, &Path)) -> Case {
        self.check = Some(check);
        self
    }
    fn modes(mut self, modes: &'static [Mode]) -> Case {
        self.modes = modes;
        self
    }
}

/// `outside` (absolute) seen from inside the layer: where a layer that
/// names it must have written instead.
fn inside(layer: &Path, outside: &Path) -> PathBuf {
    layer.join(outside.strip_prefix("/").unwrap())
}

fn hostile_cases(outside: &Path) -> Vec<Case> {
    use Expect::*;
    let out = path_str(outside).to_string();
    let t = LayerTar::new;
    vec![
        case(
            "dotdot: ../escape.txt",
            Refused,
            vec![t().file("../escape.txt", b"x")],
        ),
        case(
            "dotdot in the middle: a/b/../../../escape.txt",
            Refused,
            vec![t().dir("a", 0o755).file("a/b/../../../escape.txt", b"x")],
        ),
        case(
            "dotdot in a GNU long name",
            Refused,
            vec![t().file(
                &format!("{}{}escape.txt", "a/".repeat(60), "../".repeat(70)),
                b"x",
            )],
        ),
        case(
            "dotdot in a PAX path record",
            Refused,
            vec![t().pax_file("../../escape.txt", b"x")],
        ),
        case(
            "absolute path to the outside dir",
            Contained,
            vec![t().file(&format!("{out}/abs.txt"), b"x")],
        )
        .check(|layer, outside| {
            assert!(inside(layer, outside).join("abs.txt").is_file());
        }),
        case(
            "absolute symlink out, then a file through it",
            Contained,
            vec![t().symlink("evil", &out).file("evil/pwned.txt", b"pwned")],
        )
        .check(|layer, outside| {
            assert!(inside(layer, outside).join("pwned.txt").is_file());
            assert!(layer.join("evil").symlink_metadata().unwrap().is_symlink());
        }),
        case(
            "relative symlink ../outside, then a file through it",
            Contained,
            vec![t()
                .symlink("evil", "../outside")
                .file("evil/pwned.txt", b"pwned")],
        )
        .check(|layer, _| assert!(layer.join("outside/pwned.txt").is_file())),
        case(
            "a chain of symlinks climbing out, then a file through it",
            Contained,
            vec![t()
                .dir("c", 0o755)
                .symlink("c/up", "../../../..")
                .symlink("b", "c/up")
                .symlink("a", "b")
                .file("a/outside/pwned.txt", b"pwned")],
        )
        .check(|layer, _| assert!(layer.join("outside/pwned.txt").is_file())),
        case(
            "symlink from an earlier layer, file through it in the next",
            Contained,
            vec![
                t().symlink("etc", &out),
                t().file("etc/canary.txt", b"pwned"),
            ],
        )
        .check(|layer, outside| {
            assert!(inside(layer, outside).join("canary.txt").is_file());
        }),
        case(
            "a file replaces an earlier symlink to an outside file",
            Contained,
            vec![t()
                .symlink("link", &format!("{out}/canary.txt"))
                .file("link", b"pwned")],
        )
        .check(|layer, _| {
            assert_eq!(fs::read(layer.join("link")).unwrap(), b"pwned");
        }),
        case(
            "a directory 0777 replaces an earlier symlink to outside",
            Contained,
            vec![t().symlink("d", &out).dir("d", 0o777)],
        )
        .check(|layer, _| {
            let meta = layer.join("d").symlink_metadata().unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.mode() & 0o7777, 0o777);
        }),
        case(
            "symlink loop",
            Refused,
            vec![t()
                .symlink("loop-a", "loop-b")
                .symlink("loop-b", "loop-a")
                .file("loop-a/x", b"x")],
        ),
        case(
            "hardlink to ../outside/canary.txt",
            Refused,
            vec![t().hardlink("h", "../outside/canary.txt")],
        ),
        case(
            "hardlink to /etc/passwd (the layer has none)",
            Refused,
            vec![t().hardlink("h", "/etc/passwd")],
        ),
        case(
            "hardlink to the outside canary by absolute path",
            Refused,
            vec![t().hardlink("h", &format!("{out}/canary.txt"))],
        ),
        case(
            "hardlink to /etc/passwd means the layer's own",
            Contained,
            vec![t()
                .file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
                .hardlink("h", "/etc/passwd")],
        )
        .check(|layer, _| {
            let own = fs::metadata(layer.join("etc/passwd")).unwrap();
            let link = fs::metadata(layer.join("h")).unwrap();
            assert_eq!((own.dev(), own.ino()), (link.dev(), link.ino()));
        }),
        case(
            "hardlink through a symlink to outside",
            Refused,
            vec![t().symlink("l", &out).hardlink("h", "l/canary.txt")],
        ),
        case(
            "hardlink to a symlink pointing out links the symlink itself",
            Contained,
            vec![t()
                .symlink("s", &format!("{out}/canary.txt"))
                .hardlink("h", "s")],
        )
        .check(|layer, _| {
            assert!(layer.join("h").symlink_metadata().unwrap().is_symlink());
        }),
        case(
            "whiteout naming .. (.wh..)",
            Refused,
            vec![t().dir("sub", 0o755).file("sub/.wh..", b"")],
        ),
        case(
            "whiteout naming ... (.wh...)",
            Refused,
            vec![t().dir("sub", 0o755).file("sub/.wh...", b"")],
        ),
        case("bare .wh.", Refused, vec![t().file("sub/.wh.", b"")]),
        case(
            "whiteout through an absolute symlinked parent",
            Contained,
            vec![t().symlink("p", &out).file("p/.wh.canary.txt", b"")],
        ),
        case(
            "whiteout through a relative symlinked parent",
            Contained,
            vec![t().symlink("p", "../outside").file("p/.wh.dir", b"")],
        ),
        case(
            "whiteout of a symlink to outside removes the symlink only",
            Contained,
            vec![
                t().symlink("s", &format!("{out}/canary.txt")),
                t().file(".wh.s", b""),
            ],
        ),
        case(
            "opaque marker under a symlink to outside",
            Contained,
            vec![t().symlink("o", &out).file("o/.wh..wh..opq", b"")],
        ),
        case(
            "opaque marker under a relative symlink to ../outside",
            Contained,
            vec![
                t().symlink("o", "../outside"),
                t().file("o/.wh..wh..opq", b""),
            ],
        ),
        case(
            "a character device node",
            Contained,
            vec![t().device("dev/mem", tar::EntryType::Char, 1, 1)],
        )
        .check(|layer, _| {
            let meta = layer.join("dev/mem").symlink_metadata().unwrap();
            assert!(meta.file_type().is_char_device());
            assert_eq!(meta.rdev(), libc::makedev(1, 1));
        }),
        case(
            "a block device through a symlink to outside",
            Contained,
            vec![t()
                .symlink("d", &out)
                .device("d/sda", tar::EntryType::Block, 8, 0)],
        )
        .check(|layer, outside| {
            let meta = inside(layer, outside)
                .join("sda")
                .symlink_metadata()
                .unwrap();
            assert!(meta.file_type().is_block_device());
        }),
        case(
            "a deep path (400 levels)",
            Contained,
            vec![t().file(&format!("{}deep.txt", "d/".repeat(400)), b"deep")],
        )
        .check(|layer, _| {
            let path = layer.join(format!("{}deep.txt", "d/".repeat(400)));
            assert_eq!(fs::read(path).unwrap(), b"deep");
        }),
        case(
            "a path longer than PATH_MAX (2100 levels)",
            Refused,
            vec![t().file(&format!("{}deep.txt", "d/".repeat(2100)), b"deep")],
        ),
        case(
            "a duplicated file: the last one wins",
            Contained,
            vec![t().file("dup", b"one").file("dup", b"two")],
        )
        .check(|layer, _| assert_eq!(fs::read(layer.join("dup")).unwrap(), b"two")),
        case(
            "a file, then a directory, then a file in it, at one name",
            Contained,
            vec![t().file("x", b"one").dir("x", 0o700).file("x/y", b"y")],
        )
        .check(|layer, _| {
            assert!(layer.join("x").symlink_metadata().unwrap().is_dir());
            assert_eq!(fs::read(layer.join("x/y")).unwrap(), b"y");
        }),
        case(
            "a duplicated hardlink name replaced by a file leaves the target alone",
            Contained,
            vec![t()
                .file("f", b"original")
                .hardlink("h", "f")
                .file("h", b"replaced")],
        )
        .check(|layer, _| {
            assert_eq!(fs::read(layer.join("f")).unwrap(), b"original");
            assert_eq!(fs::read(layer.join("h")).unwrap(), b"replaced");
        }),
        case(
            "a whiteout of a file the same layer wrote keeps it (flat)",
            Contained,
            vec![t().file("keep.txt", b"kept").file(".wh.keep.txt", b"")],
        )
        .modes(&[Mode::Flat])
        .check(|layer, _| assert_eq!(fs::read(layer.join("keep.txt")).unwrap(), b"kept")),
    ]
}

/// The canary tree beside the layer directory.
fn make_canary(sandbox: &Path) {
    let outside = sandbox.join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("canary.txt"), "canary\n").unwrap();
    fs::write(outside.join("dir/inner.txt"), "inner\n").unwrap();
    std::os::unix::fs::symlink("canary.txt", outside.join("link")).unwrap();
    fs::write(sandbox.join("top.txt"), "top\n").unwrap();
    fs::create_dir(sandbox.join("layer")).unwrap();
}

#[test]
fn hostile_layers_are_contained_or_refused() {
    if !support::require_root("hostile_layers_are_contained_or_refused") {
        return;
    }
    let passwd_before = fs::metadata("/etc/passwd").unwrap();
    let count = hostile_cases(Path::new("/x")).len();
    assert!(count >= 12);
    let mut failures = Vec::new();
    for i in 0..count {
        for mode in [Mode::Overlay, Mode::Flat] {
            let sandbox = TempDir::new("ch02-hostile");
            make_canary(sandbox.path());
            let outside = sandbox.join("outside");
            let layer = sandbox.join("layer");
            let cases = hostile_cases(&outside);
            let case = &cases[i];
            if !case.modes.contains(&mode) {
                continue;
            }
            let label = format!("{} ({mode:?})", case.name);
            let before = snapshot_all_except(sandbox.path(), &["layer"]);
            let (last, earlier) = case.layers.split_last().unwrap();
            for tar in earlier {
                apply_layer(&tar[..], &layer, mode)
                    .unwrap_or_else(|e| panic!("{label}: an earlier layer failed: {e}"));
            }
            let result = std::panic::catch_unwind(|| apply_layer(&last[..], &layer, mode));
            let after = snapshot_all_except(sandbox.path(), &["layer"]);
            if after != before {
                let mut diffs = Vec::new();
                for (path, node) in &after {
                    if before.get(path) != Some(node) {
                        diffs.push(format!("  {path}: {:?} -> {node:?}", before.get(path)));
                    }
                }
                for path in before.keys().filter(|p| !after.contains_key(*p)) {
                    diffs.push(format!("  {path}: removed"));
                }
                failures.push(format!(
                    "{label}: WROTE OUTSIDE the layer:\n{}",
                    diffs.join("\n")
                ));
                continue;
            }
            match (result, case.expect) {
                (Err(_), _) => failures.push(format!("{label}: apply_layer panicked")),
                (Ok(Ok(_)), Expect::Contained) => {
                    if let Some(check) = case.check {
                        let checked = std::panic::catch_unwind(|| check(&layer, &outside)).is_ok();
                        if !checked {
                            failures.push(format!("{label}: contained, but the check failed"));
                        }
                    }
                }
                (Ok(Err(e)), Expect::Refused) => {
                    let message = e.to_string();
                    if message.trim().is_empty() || message.trim().contains('\n') {
                        failures.push(format!(
                            "{label}: refused with an unclear error {message:?}"
                        ));
                    }
                }
                (Ok(Ok(_)), Expect::Refused) => {
                    failures.push(format!("{label}: expected a refusal, but it applied"))
                }
                (Ok(Err(e)), Expect::Contained) => {
                    failures.push(format!("{label}: expected it applied inside, got: {e}"))
                }
            }
        }
    }
    let passwd_after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (
            passwd_before.nlink(),
            passwd_before.ino(),
            passwd_before.ctime()
        ),
        (
            passwd_after.nlink(),
            passwd_after.ino(),
            passwd_after.ctime()
        ),
        "/etc/passwd changed"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// 5: diff of a mount, applied on a flat unpack, gives the mounted tree
// ---------------------------------------------------------------------------

#[test]
fn diff_of_a_mount_applied_flat_gives_the_mounted_tree() {
    if !support::require_root("diff_of_a_mount_applied_flat_gives_the_mounted_tree") {
        return;
    }
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let work = TempDir::new("ch02-diff");
    let mounted = mount(&engine, &reference, &work, "merged");
    let m = mounted.target();
    // New, changed, deleted, a directory replaced, a directory removed,
    // a file replaced by a directory, metadata changed only.
    fs::write(m.join("new.txt"), "brand new\n").unwrap();
    fs::create_dir_all(m.join("srv/www")).unwrap();
    fs::write(m.join("srv/www/index.html"), "<h1>hi</h1>\n").unwrap();
    fs::write(m.join("etc/motd"), "layered v3\n").unwrap();
    fs::remove_file(m.join("etc/group")).unwrap();
    fs::remove_dir_all(m.join("app/deep")).unwrap();
    fs::create_dir(m.join("app/deep")).unwrap();
    fs::write(m.join("app/deep/fresh.txt"), "fresh\n").unwrap();
    fs::remove_dir_all(m.join("home/user")).unwrap();
    fs::remove_file(m.join("data/new.txt")).unwrap();
    fs::create_dir(m.join("data/new.txt")).unwrap();
    fs::remove_file(m.join("app/current")).unwrap();
    std::os::unix::fs::symlink("bin/suid", m.join("app/current")).unwrap();
    fs::set_permissions(
        m.join("app/bin/suid"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::lchown(m.join("etc/motd"), Some(1000), Some(1000)).unwrap();
    let expected = snapshot(m);
    let layer_tar = work.join("layer.tar");
    engine
        .run(BIN, &["diff", path_str(m), "-o", path_str(&layer_tar)])
        .ok();
    let out = engine.run(BIN, &["umount", path_str(m)]);
    out.ok();
    assert!(!support::layers::is_mount_point(m));
    // The diff lists what changed, in OCI notation.
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(&layer_tar).unwrap());
    for entry in archive.entries().unwrap() {
        names.push(
            entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    for name in [
        "new.txt",
        "etc/motd",
        "etc/.wh.group",
        "app/deep/.wh..wh..opq",
        "app/deep/fresh.txt",
        "home/.wh.user",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("bin/")), "{names:?}");
    // Flat unpack + the diff = the mounted tree.
    let x = work.join("x");
    engine.run(BIN, &["unpack", &reference, path_str(&x)]).ok();
    apply_layer(fs::File::open(&layer_tar).unwrap(), &x, Mode::Flat).unwrap();
    assert_same_tree(
        &snapshot(&x),
        &expected,
        "flat unpack + diff vs the mounted tree",
    );
}

// ---------------------------------------------------------------------------
// 6: a damaged layer blob: one clear line, nothing left, repaired by a pull
// ---------------------------------------------------------------------------

fn damaged_layer_is_refused_and_repaired(damage: &str) {
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let ids = diff_ids(&engine, &reference);
    // L2 ("COPY base-files /") belongs to layered only.
    let blob_digest = fixtures().get("layered")["layer_digests"][1]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = engine.root.join("images/blobs/sha256").join(&blob_digest);
    let mut bytes = fs::read(&blob).unwrap();
    match damage {
        "truncated" => bytes.truncate(bytes.len() / 2),
        "corrupt" => {
            let middle = bytes.len() / 2;
            for b in &mut bytes[middle..middle + 64] {
                *b ^= 0xa5;
            }
        }
        other => unreachable!("{other}"),
    }
    fs::write(&blob, &bytes).unwrap();
    let work = TempDir::new("ch02-damaged");
    let flat = work.join("flat");
    let out = engine.run(BIN, &["unpack", &reference, path_str(&flat)]);
    let line = out.fails_with(125).to_string();
    assert!(line.starts_with("unpack: "), "{line}");
    assert!(
        line.contains("layer") || line.contains("damaged") || line.contains("truncated"),
        "{damage}: unclear: {line}"
    );
    assert!(!layer_dirs(&engine).contains_key(&ids[1]));
    let target = work.join("merged");
    fs::create_dir_all(&target).unwrap();
    let _guard = MountGuard::new(BIN, engine.root.path(), &target);
    let out = engine.run(BIN, &["mount", &reference, path_str(&target)]);
    let line = out.fails_with(125).to_string();
    assert!(line.starts_with("mount: "), "{line}");
    assert!(
        line.contains("layer") || line.contains("damaged") || line.contains("truncated"),
        "{damage}: unclear: {line}"
    );
    assert!(!support::layers::is_mount_point(&target));
    let dirs = layer_dirs(&engine); // also fails on a leftover .tmp-*
    assert!(!dirs.contains_key(&ids[1]), "{damage}: {dirs:?}");
    let mounts: Vec<_> = fs::read_dir(engine.root.join("mounts"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(mounts.is_empty(), "{damage}: left {mounts:?}");
    // Repair: remove the image, pull it again.
    engine.run(BIN, &["rmi", &reference]).ok();
    assert!(!blob.exists(), "rmi kept the damaged blob");
    pull_layered(&engine, &registry);
    engine.assert_store_consistent();
    let flat2 = work.join("flat2");
    engine
        .run(BIN, &["unpack", &reference, path_str(&flat2)])
        .ok();
    assert_layered_content(&snapshot(&flat2));
    let out = engine.run(BIN, &["mount", &reference, path_str(&target)]);
    out.ok();
    assert_eq!(
        fs::read_to_string(target.join("etc/motd")).unwrap(),
        "layered v2\n"
    );
    assert!(layer_dirs(&engine).contains_key(&ids[1]));
    engine.run(BIN, &["umount", path_str(&target)]).ok();
}

#[test]
fn truncated_layer_blob_is_one_line_and_leaves_nothing() {
    if !support::require_root("truncated_layer_blob_is_one_line_and_leaves_nothing") {
        return;
    }
    damaged_layer_is_refused_and_repaired("truncated");
}

#[test]
fn corrupt_layer_blob_is_one_line_and_leaves_nothing() {
    if !support::require_root("corrupt_layer_blob_is_one_line_and_leaves_nothing") {
        return;
    }
    damaged_layer_is_refused_and_repaired("corrupt");
}

// ---------------------------------------------------------------------------
// 7: an image of 70 layers mounts
// ---------------------------------------------------------------------------

#[test]
fn an_image_of_70_layers_mounts() {
    if !support::require_root("an_image_of_70_layers_mounts") {
        return;
    }
    let engine = Engine::new();
    let work = TempDir::new("ch02-many");
    // The name points at a closed local port, so nothing is ever pulled.
    let reference = "127.0.0.1:9/many-layers:latest";
    let layers: Vec<Vec<u8>> = (0..70)
        .map(|i| {
            LayerTar::new()
                .file(
                    &format!("layer-{i:02}.txt"),
                    format!("layer {i}\n").as_bytes(),
                )
                .file("top.txt", format!("written by layer {i}\n").as_bytes())
                .into_bytes()
        })
        .collect();
    let archive = work.join("many.tar");
    fs::File::create(&archive)
        .unwrap()
        .write_all(&docker_archive(reference, &layers))
        .unwrap();
    let out = engine.run(BIN, &["load", "-i", path_str(&archive)]);
    assert!(out.ok().contains("many-layers"), "{}", out.stdout);
    let mounted = mount(&engine, reference, &work, "merged");
    let m = mounted.target();
    assert_eq!(
        fs::read_to_string(m.join("layer-00.txt")).unwrap(),
        "layer 0\n"
    );
    assert_eq!(
        fs::read_to_string(m.join("layer-69.txt")).unwrap(),
        "layer 69\n"
    );
    assert_eq!(
        fs::read_to_string(m.join("top.txt")).unwrap(),
        "written by layer 69\n"
    );
    assert_eq!(fs::read_dir(m).unwrap().count(), 71);
    let lowers = overlay_option(m, "lowerdir").unwrap();
    assert_eq!(lowers.split(':').count(), 70);
    assert_eq!(layer_dirs(&engine).len(), 70);
    engine.run(BIN, &["umount", path_str(m)]).ok();
}

// ---------------------------------------------------------------------------
// 8: layers and history
// ---------------------------------------------------------------------------

/// Splits a table into rows of cells, by the header's column positions.
fn parse_table(table: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = table.lines();
    let header: Vec<char> = lines.next().expect("a header").chars().collect();
    // A column starts where a non-space follows two or more spaces (or at 0).
    let mut starts = vec![0];
    for i in 1..header.len() {
        if header[i] != ' ' && i >= 3 && header[i - 1] == ' ' && header[i - 2] == ' ' {
            starts.push(i);
        }
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).copied().unwrap_or(header.len());
            header[s..end].iter().collect::<String>().trim().to_string()
        })
        .collect();
    lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(n, name)| {
                    let start = starts[n].min(chars.len());
                    let end = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(chars.len())
                        .min(chars.len());
                    (
                        name.clone(),
                        chars[start..end]
                            .iter()
                            .collect::<String>()
                            .trim()
                            .to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Non-directory entries of a layer blob (what `layers` counts for L1).
fn files_in_layer_blob(engine: &Engine, digest: &str) -> u64 {
    let blob = engine
        .root
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let reader = flate2::read::GzDecoder::new(fs::File::open(blob).unwrap());
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().header().entry_type().is_dir())
        .count() as u64
}

#[test]
fn layers_counts_what_each_layer_adds_changes_and_deletes() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let table = engine.run(BIN, &["layers", &reference]).ok().to_string();
    let rows = parse_table(&table);
    assert_eq!(rows.len(), 6, "{table}");
    let layer_digests = fixtures().get("layered")["layer_digests"]
        .as_array()
        .unwrap();
    let busybox_files = files_in_layer_blob(&engine, layer_digests[0].as_str().unwrap());
    assert!(busybox_files > 10, "{busybox_files}");
    // (ADDED, CHANGED, DELETED, CREATED BY) per layer, as scripts/fixtures documents.
    let expected: [(u64, u64, u64, &str); 6] = [
        (busybox_files, 0, 0, "ADD busybox-rootfs /"),
        (5, 0, 0, "COPY base-files /"),
        (8, 0, 0, "COPY app /app"),
        (
            0,
            1,
            2,
            "RUN sed -i s/v1/v2/ /etc/motd && rm -rf /opt/old /etc/obsolete.conf",
        ),
        (
            1,
            0,
            2,
            "RUN rm -rf /data && mkdir /data && echo 'new data' > /data/new.txt",
        ),
        (0, 0, 0, "RUN true"),
    ];
    for (i, (row, (added, changed, deleted, created_by))) in rows.iter().zip(expected).enumerate() {
        let got = (
            row["ADDED"].parse::<u64>().unwrap(),
            row["CHANGED"].parse::<u64>().unwrap(),
            row["DELETED"].parse::<u64>().unwrap(),
        );
        assert_eq!(got, (added, changed, deleted), "layer {}:\n{table}", i + 1);
        assert_eq!(row["CREATED BY"], created_by, "layer {}:\n{table}", i + 1);
        let digest = layer_digests[i]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert!(digest.starts_with(&row["LAYER"]), "{table}");
    }
}

#[test]
fn history_lists_the_steps_newest_first() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = pull_layered(&engine, &registry);
    let table = engine
        .run(BIN, &["history", "--no-trunc", &reference])
        .ok()
        .to_string();
    let rows = parse_table(&table);
    let steps: Vec<&str> = rows.iter().map(|r| r["CREATED BY"].as_str()).collect();
    assert_eq!(
        steps,
        [
            "WORKDIR /app",
            "ENV APP_VERSION=2",
            "RUN true",
            "RUN rm -rf /data && mkdir /data && echo 'new data' > /data/new.txt",
            "RUN sed -i s/v1/v2/ /etc/motd && rm -rf /opt/old /etc/obsolete.conf",
            "COPY app /app",
            "COPY base-files /",
            "ADD busybox-rootfs /",
        ],
        "{table}"
    );
    // The newest row is the image; the steps below have no image of their own.
    let id = fixtures().get("layered")["config_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert!(id.starts_with(&rows[0]["IMAGE"]), "{table}");
    assert!(
        rows[1..].iter().all(|r| r["IMAGE"] == "<missing>"),
        "{table}"
    );
    // Config-only steps have no size.
    assert_eq!(rows[0]["SIZE"], "0B", "{table}");
    assert_eq!(rows[1]["SIZE"], "0B", "{table}");
    // Without --no-trunc, long steps are cut with an ellipsis.
    let short = engine.run(BIN, &["history", &reference]).ok().to_string();
    let short_rows = parse_table(&short);
    assert_eq!(short_rows.len(), 8, "{short}");
    assert!(short_rows[3]["CREATED BY"].ends_with('…'), "{short}");
    assert!(short_rows[3]["CREATED BY"].chars().count() <= 45, "{short}");
}

// ---------------------------------------------------------------------------
// Flat and overlay agree, whatever the order of whiteouts in a layer
// ---------------------------------------------------------------------------

/// Applies `layers` flat into one dir, and for overlay each into its own
/// dir mounted by the kernel; returns (flat tree, overlay tree).
fn flat_and_overlay(layers: &[Vec<u8>]) -> (Tree, Tree) {
    let work = TempDir::new("ch02-agree");
    let flat = work.join("flat");
    fs::create_dir(&flat).unwrap();
    let mut lowers = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        apply_layer(&layer[..], &flat, Mode::Flat).unwrap();
        let dir = work.join(format!("l{i}"));
        fs::create_dir(&dir).unwrap();
        apply_layer(&layer[..], &dir, Mode::Overlay).unwrap();
        lowers.push(dir);
    }
    for d in ["upper", "work", "merged"] {
        fs::create_dir(work.join(d)).unwrap();
    }
    let merged = work.join("merged");
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|d| d.display().to_string())
        .collect();
    let _guard = support::layers::UnmountGuard(merged.clone());
    let out = sh(&format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
        lowerdir.join(":"),
        work.join("upper").display(),
        work.join("work").display(),
        merged.display()
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    (snapshot(&flat), snapshot(&merged))
}

fn paths(tree: &Tree) -> Vec<&str> {
    tree.keys().map(String::as_str).collect()
}

fn base_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("data", 0o755)
        .dir("data/sub", 0o755)
        .file("data/sub/old.txt", b"old")
        .file("data/keep.txt", b"keep")
        .file("x", b"old x")
        .into_bytes()
}

/// Asserts flat and overlay give the same tree, with exactly `expected` paths.
#[track_caller]
fn assert_agree(layers: &[Vec<u8>], expected: &[&str]) {
    let (flat, overlay) = flat_and_overlay(layers);
    assert_eq!(paths(&overlay), expected, "overlay mount");
    assert_eq!(paths(&flat), expected, "flat unpack");
    for (path, node) in &flat {
        if let Kind::File { .. } = node.kind {
            assert_eq!(node.kind, overlay[path].kind, "{path}");
        }
    }
}

#[test]
fn flat_and_overlay_agree_on_whiteouts_and_opaque_dirs() {
    if !support::require_root("flat_and_overlay_agree_on_whiteouts_and_opaque_dirs") {
        return;
    }
    let t = LayerTar::new;
    // The opaque marker first, as docker writes it.
    assert_agree(
        &[
            base_layer(),
            t().dir("data", 0o755)
                .file("data/.wh..wh..opq", b"")
                .dir("data/sub", 0o755)
                .file("data/sub/new.txt", b"new")
                .into_bytes(),
        ],
        &["data", "data/sub", "data/sub/new.txt", "x"],
    );
    // The opaque marker after the layer's own entries (with their dir entries).
    assert_agree(
        &[
            base_layer(),
            t().dir("data", 0o755)
                .dir("data/sub", 0o755)
                .file("data/sub/new.txt", b"new")
                .file("data/.wh..wh..opq", b"")
                .into_bytes(),
        ],
        &["data", "data/sub", "data/sub/new.txt", "x"],
    );
    // A whiteout, then the layer's own file of that name.
    assert_agree(
        &[
            base_layer(),
            t().file(".wh.x", b"").file("x", b"new x").into_bytes(),
        ],
        &["data", "data/keep.txt", "data/sub", "data/sub/old.txt", "x"],
    );
    // A whiteout of a directory, and a whiteout of something absent.
    assert_agree(
        &[
            base_layer(),
            t().file("data/.wh.sub", b"")
                .file(".wh.nothing-here", b"")
                .into_bytes(),
        ],
        &["data", "data/keep.txt", "x"],
    );
}

#[test]
fn flat_opaque_marker_after_files_in_implicit_dirs_keeps_them() {
    if !support::require_root("flat_opaque_marker_after_files_in_implicit_dirs_keeps_them") {
        return;
    }
    // data/sub has no entry of its own in the layer: it is created implicitly.
    assert_agree(
        &[
            base_layer(),
            LayerTar::new()
                .file("data/sub/new.txt", b"new")
                .file("data/.wh..wh..opq", b"")
                .into_bytes(),
        ],
        &["data", "data/sub", "data/sub/new.txt", "x"],
    );
}

#[test]
fn overlay_whiteout_after_the_layers_own_file_keeps_it() {
    if !support::require_root("overlay_whiteout_after_the_layers_own_file_keeps_it") {
        return;
    }
    // OCI: a whiteout only hides the layers below, never an entry of its own layer.
    assert_agree(
        &[
            base_layer(),
            LayerTar::new()
                .file("x", b"new x")
                .file(".wh.x", b"")
                .into_bytes(),
        ],
        &["data", "data/keep.txt", "data/sub", "data/sub/old.txt", "x"],
    );
}

#[test]
fn flat_unpack_refuses_a_layer_that_does_not_match_its_diff_id() {
    if !support::require_root("flat_unpack_refuses_a_layer_that_does_not_match_its_diff_id") {
        return;
    }
    let engine = Engine::new();
    let work = TempDir::new("ch02-bitflip");
    let reference = "127.0.0.1:9/bitflip:latest";
    let layers = vec![
        LayerTar::new().file("a.txt", b"layer a\n").into_bytes(),
        LayerTar::new().file("b.txt", b"layer b\n").into_bytes(),
    ];
    let archive = work.join("bitflip.tar");
    fs::write(&archive, docker_archive(reference, &layers)).unwrap();
    engine.run(BIN, &["load", "-i", path_str(&archive)]).ok();
    // The layers are stored uncompressed (as loaded): flip one byte of a
    // file's contents, which no gzip checksum can catch.
    let blob = engine
        .root
        .join("images/blobs/sha256")
        .join(sha256_hex(&layers[1]));
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(7).position(|w| w == b"layer b").unwrap();
    bytes[at] = b'L';
    fs::write(&blob, &bytes).unwrap();
    let target = work.join("merged");
    fs::create_dir(&target).unwrap();
    let _guard = MountGuard::new(BIN, engine.root.path(), &target);
    let line = engine
        .run(BIN, &["mount", reference, path_str(&target)])
        .fails_with(125)
        .to_string();
    assert!(line.contains("diff ID"), "{line}");
    let flat = work.join("flat");
    let out = engine.run(BIN, &["unpack", reference, path_str(&flat)]);
    let line = out.fails_with(125);
    assert!(line.contains("diff ID"), "{line}");
}

#[test]
fn whiteout_of_a_directory_keeps_what_the_same_layer_wrote_inside() {
    if !support::require_root("whiteout_of_a_directory_keeps_what_the_same_layer_wrote_inside") {
        return;
    }
    // The whiteout hides data/sub's lower content (old.txt), not new.txt,
    // which this very layer wrote before it.
    assert_agree(
        &[
            base_layer(),
            LayerTar::new()
                .file("data/sub/new.txt", b"new")
                .file("data/.wh.sub", b"")
                .into_bytes(),
        ],
        &["data", "data/keep.txt", "data/sub", "data/sub/new.txt", "x"],
    );
}
