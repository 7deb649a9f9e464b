//! Chapter 04 end to end: volumes, bind mounts and tmpfs, driven as a
//! learner would, as root. The image is built here (busybox from the
//! host's `busybox-static`, `/var/lib/app/seed.txt` in a directory owned
//! by 1000:1000 mode 0750, an absolute symlink `/escape` to a host path
//! the test owns) and loaded with `load`, with or without
//! `VOLUME ["/var/lib/app"]` in its config. Every attack is the learner's
//! exploit, which must fail; every test cleans up also when it fails
//! (`Setup` kills and unmounts, the `TempDir`s go).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use support::containers::{mounts_under, Setup};
use support::{Run, TempDir};

const BIN: &str = "ch04-volumes";
/// The image with `VOLUME ["/var/lib/app"]`, and the same without it.
const SEEDED: &str = "volumes-test:with-volume";
const PLAIN: &str = "volumes-test:plain";

/// One tar entry's header.
fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

/// The image's one layer; `/escape` points at `escape_target`.
fn layer(escape_target: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, uid: u64| {
        let mut h = header(tar::EntryType::Directory, mode, uid, 0);
        b.append_data(&mut h, name, &[][..]).unwrap();
    };
    for (name, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("var", 0o755),
        ("var/lib", 0o755),
    ] {
        dir(&mut b, name, mode, 0);
    }
    dir(&mut b, "var/lib/app", 0o750, 1000);
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32, uid| {
        let mut h = header(tar::EntryType::Regular, mode, uid, data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    let busybox = fs::read("/bin/busybox").expect("busybox-static (scripts/setup installs it)");
    file(&mut b, "bin/busybox", &busybox, 0o755, 0);
    file(&mut b, "var/lib/app/seed.txt", b"seeded\n", 0o640, 1000);
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/var/lib/app:/bin/sh\n",
        0o644,
        0,
    );
    file(&mut b, "etc/group", b"root:x:0:\napp:x:1000:\n", 0o644, 0);
    let link = |b: &mut tar::Builder<Vec<u8>>, name: &str, target: &Path| {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
        b.append_link(&mut h, name, target).unwrap();
    };
    link(&mut b, "var/lib/app/link", Path::new("seed.txt"));
    link(&mut b, "escape", escape_target);
    let applets = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            link(&mut b, &format!("bin/{applet}"), Path::new("busybox"));
        }
    }
    b.into_inner().unwrap()
}

/// A docker archive (what `load` reads) of one image of `layer`.
fn archive(tag: &str, layer: &[u8], volumes: bool) -> Vec<u8> {
    let diff_id = format!("sha256:{}", support::sha256_hex(layer));
    let mut config = serde_json::json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]});
    if volumes {
        config["Volumes"] = serde_json::json!({"/var/lib/app": {}});
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": support::fixtures().manifest["host_architecture"],
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let config_name = format!("blobs/sha256/{}", support::sha256_hex(&config));
    let layer_name = format!("blobs/sha256/{}", support::sha256_hex(layer));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": [tag], "Layers": [layer_name],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", &manifest[..]),
        (&config_name[..], &config[..]),
        (&layer_name[..], layer),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A test's engine, its two images loaded, and the host directory the
/// image's `/escape` points into (`host/escape-target`, not made).
struct Lab {
    setup: Setup,
    host: TempDir,
}

impl Lab {
    fn new() -> Lab {
        let setup = Setup::new(BIN);
        let host = TempDir::new("ch04-host");
        let layer = layer(&host.join("escape-target"));
        for (tag, volumes) in [(SEEDED, true), (PLAIN, false)] {
            let file = host.join("image.tar");
            fs::write(&file, archive(tag, &layer, volumes)).unwrap();
            setup.run(&["load", "-i", file.to_str().unwrap()]).ok();
            fs::remove_file(&file).unwrap();
        }
        Lab { setup, host }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.setup.run(args)
    }

    /// `run --rm [FLAGS] PLAIN sh -c SCRIPT`, which must succeed.
    fn sh(&self, flags: &[&str], script: &str) -> String {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[PLAIN, "sh", "-c", script]);
        self.run(&args).ok().to_string()
    }

    fn volumes_dir(&self) -> PathBuf {
        self.setup.engine.root.join("volumes")
    }

    /// `volume ls -q`.
    fn volume_names(&self) -> Vec<String> {
        let out = self.run(&["volume", "ls", "-q"]);
        out.ok().lines().map(String::from).collect()
    }

    /// The host path of volume `name`'s data.
    fn data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// Nothing of any container left (directories, mounts, cgroups), no
    /// half-seeded `_data.tmp`, only the volumes named in `volumes`.
    #[track_caller]
    fn assert_nothing_left(&self, volumes: &[&str]) {
        self.setup.assert_nothing_left();
        assert_eq!(
            mounts_under(self.setup.engine.root.path()),
            Vec::<String>::new()
        );
        let mut names = self.volume_names();
        names.sort();
        let mut expected: Vec<String> = volumes.iter().map(|v| v.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected, "volumes left");
        for entry in fs::read_dir(self.volumes_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            assert!(
                !entry.path().join("_data.tmp").exists(),
                "a half-made seed in {}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn the_writable_layer_dies_with_rm_a_volume_and_a_bind_do_not() {
    if !support::require_root("the_writable_layer_dies_with_rm_a_volume_and_a_bind_do_not") {
        return;
    }
    let lab = Lab::new();
    // No volume: kept while the container is (start sees it), gone with rm.
    lab.run(&[
        "run",
        "--name",
        "box",
        PLAIN,
        "sh",
        "-c",
        "echo kept >> /note; cat /note",
    ])
    .ok();
    assert_eq!(lab.run(&["start", "-a", "box"]).ok(), "kept\nkept\n");
    lab.run(&["rm", "box"]).ok();
    assert_eq!(
        lab.sh(&[], "cat /note 2>&1 || echo gone"),
        "cat: can't open '/note': No such file or directory\ngone\n"
    );
    // A named volume: there in the next container.
    lab.sh(&["-v", "notes:/data"], "echo persisted > /data/note");
    assert_eq!(
        lab.sh(&["-v", "notes:/data"], "cat /data/note"),
        "persisted\n"
    );
    assert_eq!(
        fs::read_to_string(lab.data("notes").join("note")).unwrap(),
        "persisted\n"
    );
    // A bind mount: on the host.
    let bind = format!("{}:/host", lab.host.path().display());
    lab.sh(&["-v", &bind], "echo from-the-container > /host/out");
    assert_eq!(
        fs::read_to_string(lab.host.join("out")).unwrap(),
        "from-the-container\n"
    );
    // inspect shows both in docker's shape.
    let id = lab
        .run(&[
            "create",
            "--name",
            "shown",
            "-v",
            "notes:/data:ro",
            "-v",
            &bind,
            PLAIN,
        ])
        .ok()
        .trim()
        .to_string();
    let inspect: serde_json::Value = serde_json::from_str(lab.run(&["inspect", &id]).ok()).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap();
    let volume = mounts.iter().find(|m| m["Type"] == "volume").unwrap();
    assert_eq!(volume["Name"], "notes");
    assert_eq!(volume["Destination"], "/data");
    assert_eq!(volume["RW"], false);
    assert_eq!(volume["Driver"], "local");
    let bound = mounts.iter().find(|m| m["Type"] == "bind").unwrap();
    assert_eq!(bound["Source"], lab.host.path().to_str().unwrap());
    assert_eq!(bound["Propagation"], "rprivate");
    lab.run(&["rm", "shown"]).ok();
    lab.assert_nothing_left(&["notes"]);
}

#[test]
fn a_new_volume_is_seeded_once_with_owner_and_mode_never_a_bind_nocopy_or_full_one() {
    if !support::require_root("a_new_volume_is_seeded_once") {
        return;
    }
    let lab = Lab::new();
    let out = lab.sh(
        &["-v", "appdata:/var/lib/app"],
        "stat -c '%u:%g %a' /var/lib/app; cat /var/lib/app/seed.txt; readlink /var/lib/app/link",
    );
    assert_eq!(out, "1000:1000 750\nseeded\nseed.txt\n");
    let data = lab.data("appdata");
    let meta = fs::metadata(&data).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1000, 1000, 0o750)
    );
    // A second container's writes are kept, never seeded over.
    lab.sh(
        &["-v", "appdata:/var/lib/app"],
        "echo mine > /var/lib/app/seed.txt; rm /var/lib/app/link; echo new > /var/lib/app/new",
    );
    assert_eq!(
        lab.sh(
            &["-v", "appdata:/var/lib/app"],
            "cat /var/lib/app/*; ls /var/lib/app"
        ),
        "new\nmine\nnew\nseed.txt\n"
    );
    // nocopy: empty.
    assert_eq!(
        lab.sh(&["-v", "bare:/var/lib/app:nocopy"], "ls -A /var/lib/app"),
        ""
    );
    let nocopy_mount = "type=volume,src=bare2,dst=/var/lib/app,volume-nocopy";
    assert_eq!(lab.sh(&["--mount", nocopy_mount], "ls -A /var/lib/app"), "");
    // A bind: the host directory as it is, nothing copied onto the host.
    let empty = lab.host.join("empty");
    fs::create_dir(&empty).unwrap();
    let bind = format!("{}:/var/lib/app", empty.display());
    assert_eq!(lab.sh(&["-v", &bind], "ls -A /var/lib/app"), "");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    // A volume with something in it already: left as it is.
    lab.run(&["volume", "create", "full"]).ok();
    lab.sh(&["-v", "full:/other"], "echo x > /other/x");
    assert_eq!(
        lab.sh(&["-v", "full:/var/lib/app"], "ls -A /var/lib/app"),
        "x\n"
    );
    // --explain narrates the copy-up and the mounts as shell commands.
    let missing = lab.host.join("explained");
    let explained = lab.run(&[
        "--explain",
        "run",
        "--rm",
        "-v",
        "told:/var/lib/app",
        "-v",
        &format!("{}:/t:ro", missing.display()),
        "--tmpfs",
        "/s:size=1m",
        PLAIN,
        "true",
    ]);
    explained.ok();
    for shell in [
        format!("$ mkdir -p {}", missing.display()),
        format!("$ mkdir -p {}", lab.data("told").display()),
        format!(
            "$ cp -a {}",
            lab.setup.engine.root.join("containers").display()
        ),
        format!("/var/lib/app/. {}", lab.data("told").display()),
        "$ mount --rbind".to_string(),
        "$ mount -o remount,bind,ro /t".to_string(),
        "mount_setattr(AT_RECURSIVE".to_string(),
        "$ mount -t tmpfs -o noexec,nosuid,nodev,size=1048576".to_string(),
    ] {
        assert!(
            explained.stderr.contains(&shell),
            "no {shell}: {}",
            explained.stderr
        );
    }
    // A volume made by `volume create`, still empty: seeded on first use.
    lab.run(&["volume", "create", "later"]).ok();
    assert_eq!(
        lab.sh(&["-v", "later:/var/lib/app"], "cat /var/lib/app/seed.txt"),
        "seeded\n"
    );
    lab.assert_nothing_left(&["appdata", "bare", "bare2", "full", "later", "told"]);
}

#[test]
fn an_image_volume_is_anonymous_removed_by_rm_v_run_rm_and_prune() {
    if !support::require_root("an_image_volume_is_anonymous") {
        return;
    }
    let lab = Lab::new();
    // run --rm: the anonymous volume goes with the container.
    assert_eq!(
        lab.run(&["run", "--rm", SEEDED, "cat", "/var/lib/app/seed.txt"])
            .ok(),
        "seeded\n"
    );
    lab.assert_nothing_left(&[]);
    // rm -v: the same; a named volume on the same container stays.
    lab.run(&["run", "--name", "aa", "-v", "named:/named", SEEDED, "true"])
        .ok();
    let anonymous: Vec<String> = lab
        .volume_names()
        .into_iter()
        .filter(|n| n != "named")
        .collect();
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    assert_eq!(anonymous[0].len(), 64);
    assert!(lab.data(&anonymous[0]).join("seed.txt").exists());
    lab.run(&["rm", "-v", "aa"]).ok();
    assert_eq!(lab.volume_names(), ["named"]);
    // rm without -v keeps it; prune (without -a) removes it once unused,
    // and not the named one.
    lab.run(&["run", "--name", "bb", SEEDED, "true"]).ok();
    let dangling = lab.run(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(dangling.ok(), "named\n");
    let prune = lab.run(&["volume", "prune", "-f"]);
    assert!(!prune.ok().contains("Deleted Volumes"), "{}", prune.stdout);
    lab.run(&["rm", "bb"]).ok();
    assert_eq!(lab.volume_names().len(), 2);
    let prune = lab.run(&["volume", "prune", "-f"]);
    assert!(
        prune.ok().starts_with("Deleted Volumes:\n"),
        "{}",
        prune.stdout
    );
    assert!(
        prune.stdout.contains("Total reclaimed space: "),
        "{}",
        prune.stdout
    );
    assert_eq!(lab.volume_names(), ["named"]);
    // `-v /ctr` alone: an anonymous volume (64 hex digits), seeded, gone
    // with --rm; an image VOLUME a -v covers gets no anonymous volume.
    assert_eq!(
        lab.run(&[
            "run",
            "--name",
            "cc",
            "-v",
            "/var/lib/app",
            PLAIN,
            "cat",
            "/var/lib/app/seed.txt"
        ])
        .ok(),
        "seeded\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(lab.run(&["inspect", "cc"]).ok()).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let name = mounts[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(name.len(), 64);
    assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Source"], lab.data(&name).to_str().unwrap());
    let inspect: serde_json::Value =
        serde_json::from_str(lab.run(&["volume", "inspect", &name]).ok()).unwrap();
    assert!(inspect[0]["Labels"]
        .as_object()
        .unwrap()
        .contains_key("com.docker.volume.anonymous"));
    lab.run(&["rm", "-v", "cc"]).ok();
    lab.run(&["run", "--rm", "-v", "/anon", PLAIN, "true"]).ok();
    lab.run(&["run", "--rm", "-v", "named:/var/lib/app", SEEDED, "true"])
        .ok();
    assert_eq!(lab.volume_names(), ["named"]);
    // rm -f of a detached container: rm -v -f removes its anonymous volume.
    let detached = lab
        .run(&["run", "-d", "--name", "dd", SEEDED, "sleep", "1000"])
        .ok()
        .trim()
        .to_string();
    assert_eq!(detached.len(), 64);
    lab.run(&["rm", "-f", "-v", "dd"]).ok();
    // -a: unused named ones too.
    lab.run(&["volume", "prune", "-f", "-a"]).ok();
    lab.assert_nothing_left(&[]);
}

#[test]
fn v_creates_a_missing_host_dir_mount_refuses_it_and_relative_paths_are_the_callers() {
    if !support::require_root("v_creates_a_missing_host_dir") {
        return;
    }
    let lab = Lab::new();
    let missing = lab.host.join("made/by/v");
    let spec = format!("{}:/x", missing.display());
    lab.sh(&["-v", &spec], "echo hi > /x/f");
    assert_eq!(fs::read_to_string(missing.join("f")).unwrap(), "hi\n");
    let absent = lab.host.join("absent");
    let mount = format!("type=bind,src={},dst=/x", absent.display());
    let out = lab.run(&["run", "--rm", "--mount", &mount, PLAIN, "true"]);
    assert_eq!(
        out.fails_with(125),
        format!(
            "run: invalid mount config for type \"bind\": bind source path does not exist: {}",
            absent.display()
        )
    );
    assert!(!absent.exists());
    // ./rel is the caller's.
    fs::create_dir(lab.host.join("rel")).unwrap();
    fs::write(lab.host.join("rel/inside"), "relative\n").unwrap();
    let mut command = lab.setup.engine.command(
        BIN,
        &["run", "--rm", "-v", "./rel:/r", PLAIN, "cat", "/r/inside"],
    );
    command.current_dir(lab.host.path());
    let out = Run::from_output(command.output().unwrap());
    assert_eq!(out.ok(), "relative\n");
    lab.assert_nothing_left(&[]);
}

/// Unmounts what the test mounted on the host, also when it fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn ro_is_read_only_all_the_way_down_and_tmpfs_is_memory() {
    if !support::require_root("ro_is_read_only_all_the_way_down") {
        return;
    }
    let lab = Lab::new();
    // A host tree with a submount: the read-only rbind covers it too.
    let tree = lab.host.join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &tree.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _unmount = Unmount(tree.join("sub"));
    let spec = format!("{}:/ro:ro", tree.display());
    let out = lab.sh(
        &["-v", &spec],
        "touch /ro/top 2>&1; touch /ro/sub/below 2>&1; true",
    );
    assert_eq!(
        out,
        "touch: /ro/top: Read-only file system\ntouch: /ro/sub/below: Read-only file system\n"
    );
    assert!(!tree.join("top").exists() && !tree.join("sub/below").exists());
    let out = lab.sh(&["-v", "rovol:/data:ro"], "(echo x > /data/f) 2>&1; true");
    assert!(out.contains("Read-only file system"), "{out}");
    // --tmpfs: a tmpfs with docker's options, empty next time.
    let out = lab.sh(
        &["--tmpfs", "/scratch:size=1m"],
        "grep ' /scratch ' /proc/mounts; echo x > /scratch/f; ls /scratch",
    );
    assert!(
        out.starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{out}"
    );
    assert!(out.contains("size=1024k"), "{out}");
    assert!(out.ends_with("f\n"), "{out}");
    assert_eq!(lab.sh(&["--tmpfs", "/scratch"], "ls -A /scratch"), "");
    // mode=, and --mount's tmpfs-size= and tmpfs-mode=, reach the kernel.
    let out = lab.sh(
        &[
            "--tmpfs",
            "/s:size=2m,mode=700",
            "--mount",
            "type=tmpfs,dst=/t,tmpfs-size=64MiB,tmpfs-mode=1770",
        ],
        "grep ' /s ' /proc/mounts; grep ' /t ' /proc/mounts; stat -c '%n %a' /s /t",
    );
    assert_eq!(
        out,
        "tmpfs /s tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k,mode=700 0 0\n\
         tmpfs /t tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k,mode=1770 0 0\n\
         /s 700\n/t 1770\n"
    );
    // --mount's readonly=, quoted fields and volume-label= for a new volume.
    let out = lab.sh(
        &[
            "--mount",
            "\"type=volume\",\"source=labelled\",\"target=/d\",readonly=false,volume-label=team=db",
            "--mount",
            "type=volume,src=labelled,destination=/r,ro=1",
        ],
        "touch /d/ok && echo rw; touch /r/no 2>&1; true",
    );
    assert_eq!(out, "rw\ntouch: /r/no: Read-only file system\n");
    let inspect: serde_json::Value =
        serde_json::from_str(lab.run(&["volume", "inspect", "labelled"]).ok()).unwrap();
    assert_eq!(inspect[0]["Labels"], serde_json::json!({"team": "db"}));
    lab.assert_nothing_left(&["labelled", "rovol"]);
}

#[test]
fn a_hostile_symlink_cannot_send_a_volume_onto_the_host_and_bad_names_are_refused() {
    if !support::require_root("a_hostile_symlink") {
        return;
    }
    let lab = Lab::new();
    // The image's /escape -> HOST/escape-target: the learner's exploit.
    let target = lab.host.join("escape-target");
    let out = lab.sh(
        &["-v", "trap:/escape"],
        "echo pwned > /escape/owned; cat /escape/owned",
    );
    assert_eq!(out, "pwned\n");
    assert!(!target.exists(), "the volume went onto the host");
    let written: Vec<PathBuf> = walk(&lab.data("trap"));
    assert!(
        written.iter().any(|p| p.ends_with("owned")),
        "the write is not in the volume: {written:?}"
    );
    // Through --mount too, and seeding through it copies nothing of the host.
    fs::create_dir(&target).unwrap();
    fs::write(target.join("host-secret"), "secret").unwrap();
    let out = lab.sh(&["--mount", "src=trap2,dst=/escape"], "ls -A /escape");
    assert_eq!(out, "", "the host's files were seeded into the volume");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 1);
    // Bad names: refused before anything is made.
    for bad in [
        vec!["run", "--rm", "-v", "a/b:/d", PLAIN, "true"],
        vec!["run", "--rm", "--mount", "src=../x,dst=/d", PLAIN, "true"],
        vec!["run", "--rm", "--mount", "src=a/../b,dst=/d", PLAIN, "true"],
        vec!["volume", "create", "../x"],
        vec!["volume", "create", "a/b"],
    ] {
        let out = lab.run(&bad);
        let line = out.fails_with(125);
        assert!(
            line.contains("includes invalid characters for a local volume name"),
            "{line}"
        );
    }
    assert!(!lab.volumes_dir().join("a").exists());
    assert!(!lab.setup.engine.root.join("x").exists());
    lab.assert_nothing_left(&["trap", "trap2"]);
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        found.push(entry.path());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path()));
        }
    }
    found
}

#[test]
fn two_running_containers_share_a_volume_and_ten_runs_at_once_make_one() {
    if !support::require_root("two_running_containers_share_a_volume") {
        return;
    }
    let lab = Lab::new();
    for name in ["one", "two"] {
        lab.run(&[
            "run",
            "-d",
            "--name",
            name,
            "-v",
            "shared:/d",
            PLAIN,
            "sleep",
            "1000",
        ])
        .ok();
    }
    lab.run(&["exec", "one", "sh", "-c", "echo from-one > /d/msg"])
        .ok();
    assert_eq!(
        lab.run(&["exec", "two", "cat", "/d/msg"]).ok(),
        "from-one\n"
    );
    lab.run(&["rm", "-f", "one", "two"]).ok();
    // Ten at once, on a new volume.
    let children: Vec<std::process::Child> = (0..10)
        .map(|i| {
            let script = format!("echo {i} > /d/$HOSTNAME");
            lab.setup
                .engine
                .command(
                    BIN,
                    &["run", "--rm", "-v", "crowd:/d", PLAIN, "sh", "-c", &script],
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = support::containers::wait_bounded(child, std::time::Duration::from_secs(60));
        out.ok();
    }
    assert_eq!(fs::read_dir(lab.data("crowd")).unwrap().count(), 10);
    lab.assert_nothing_left(&["crowd", "shared"]);
}

#[test]
fn volume_commands_behave_as_dockers() {
    if !support::require_root("volume_commands_behave_as_dockers") {
        return;
    }
    let lab = Lab::new();
    assert_eq!(
        lab.run(&["volume", "create", "--label", "k=v", "keep"])
            .ok(),
        "keep\n"
    );
    assert_eq!(lab.run(&["volume", "create", "keep"]).ok(), "keep\n");
    let ls = lab.run(&["volume", "ls"]);
    assert_eq!(ls.ok(), "DRIVER    VOLUME NAME\nlocal     keep\n");
    let inspect: serde_json::Value =
        serde_json::from_str(lab.run(&["volume", "inspect", "keep"]).ok()).unwrap();
    assert_eq!(inspect[0]["Name"], "keep");
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Scope"], "local");
    assert_eq!(inspect[0]["Labels"]["k"], "v");
    assert_eq!(inspect[0]["Mountpoint"], lab.data("keep").to_str().unwrap());
    assert_eq!(inspect[0]["Options"], serde_json::json!({}));
    assert!(
        inspect[0]["CreatedAt"].as_str().unwrap().ends_with('Z'),
        "{inspect}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(lab.volumes_dir().join("keep/volume.json")).unwrap())
            .unwrap();
    for field in [
        "Name",
        "CreatedAt",
        "Driver",
        "Labels",
        "Options",
        "Anonymous",
    ] {
        assert!(
            json.get(field).is_some(),
            "volume.json has no {field}: {json}"
        );
    }
    assert_eq!(json["Anonymous"], false);
    // Filters: by name (a part of it), by label, dangling; -q only names.
    lab.run(&["volume", "create", "other"]).ok();
    let ls = |filters: &[&str]| {
        let mut args = vec!["volume", "ls", "-q"];
        for f in filters {
            args.extend_from_slice(&["--filter", f]);
        }
        lab.run(&args).ok().to_string()
    };
    assert_eq!(ls(&["name=ee"]), "keep\n");
    assert_eq!(ls(&["label=k"]), "keep\n");
    assert_eq!(ls(&["label=k=v"]), "keep\n");
    assert_eq!(ls(&["label=k=w"]), "");
    assert_eq!(ls(&["dangling=true"]), "keep\nother\n");
    assert_eq!(ls(&["dangling=true", "name=oth"]), "other\n");
    assert_eq!(
        lab.run(&["volume", "ls", "--filter", "name=oth"]).ok(),
        "DRIVER    VOLUME NAME\nlocal     other\n"
    );
    assert!(lab
        .run(&["volume", "ls", "--filter", "colour=red"])
        .fails_with(125)
        .contains("invalid filter 'colour=red'"));
    lab.run(&["volume", "rm", "other"]).ok();
    // In use by a stopped container: refused; after rm, removed.
    let id = lab
        .run(&["create", "--name", "user", "-v", "keep:/d", PLAIN, "true"])
        .ok()
        .trim()
        .to_string();
    let refused = lab.run(&["volume", "rm", "keep"]);
    let line = refused.fails_with(1);
    assert!(
        line.contains("volume is in use") && line.contains(&id),
        "{line}"
    );
    assert_eq!(lab.volume_names(), ["keep"]);
    // dangling=false: the volumes some container uses.
    let used = lab.run(&["volume", "ls", "-q", "--filter", "dangling=false"]);
    assert_eq!(used.ok(), "keep\n");
    assert_eq!(
        lab.run(&["volume", "ls", "-q", "--filter", "dangling=true"])
            .ok(),
        ""
    );
    // -f does not force an in-use volume out: it only silences missing names.
    let forced = lab.run(&["volume", "rm", "-f", "keep"]);
    assert!(
        forced.fails_with(1).contains("volume is in use"),
        "{}",
        forced.stderr
    );
    assert_eq!(lab.volume_names(), ["keep"]);
    lab.run(&["rm", "user"]).ok();
    assert_eq!(lab.run(&["volume", "rm", "keep"]).ok(), "keep\n");
    assert_eq!(lab.run(&["volume", "ls", "-q"]).ok(), "");
    // Missing: exit 1, silent with -f.
    lab.run(&["volume", "rm", "nosuch"]).fails_with(1);
    let forced = lab.run(&["volume", "rm", "-f", "nosuch"]);
    assert_eq!((forced.code, forced.stderr.as_str()), (0, ""));
    lab.run(&["volume", "inspect", "nosuch"]).fails_with(1);
    // prune: a directory a crash left without volume.json goes too, and
    // nothing to delete still says how much was reclaimed.
    fs::create_dir_all(lab.data("half-made")).unwrap();
    fs::write(lab.data("half-made").join("f"), "x").unwrap();
    assert_eq!(lab.volume_names(), Vec::<String>::new());
    assert_eq!(
        lab.run(&["volume", "prune", "-f"]).ok(),
        "Total reclaimed space: 0B\n"
    );
    assert!(!lab.volumes_dir().join("half-made").exists());
    // prune -a: unused named volumes too, with docker's summary.
    lab.run(&["volume", "create", "unused"]).ok();
    fs::write(lab.data("unused").join("f"), vec![0u8; 2048]).unwrap();
    let pruned = lab.run(&["volume", "prune", "-f", "-a"]);
    assert_eq!(
        pruned.ok(),
        "Deleted Volumes:\nunused\n\nTotal reclaimed space: 2.048kB\n"
    );
    lab.assert_nothing_left(&[]);
}

#[test]
fn bad_input_is_one_line_exit_125_and_makes_nothing() {
    if !support::require_root("bad_input_is_one_line_exit_125") {
        return;
    }
    let lab = Lab::new();
    let file = lab.host.join("a-file");
    fs::write(&file, "x").unwrap();
    let dir = lab.host.join("a-dir");
    fs::create_dir(&dir).unwrap();
    let file_onto_dir = format!("{}:/var/lib/app", file.display());
    let dir_onto_file = format!("{}:/etc/passwd", dir.display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-v", "data"], "'data' mount path must be absolute"),
        (
            vec!["-v", "a:b:c:d"],
            "invalid volume specification: 'a:b:c:d'",
        ),
        (
            vec!["-v", "/x:relative"],
            "'relative' mount path must be absolute",
        ),
        (vec!["-v", "xx:/"], "destination can't be '/'"),
        (
            vec!["--mount", "type=nfs,dst=/x"],
            "invalid mount type \"nfs\"",
        ),
        (vec!["--mount", "type=volume"], "target is required"),
        (vec!["--tmpfs", "relative"], "must be absolute"),
        (
            vec!["-v", "one:/data", "-v", "two:/data"],
            "Duplicate mount point: /data",
        ),
        (
            vec!["-v", "one:/data", "--tmpfs", "/data/"],
            "Duplicate mount point: /data",
        ),
        (vec!["-v", "dd:/x:rshared"], "only rprivate"),
        (vec!["-v", "dd:/x:private"], "only rprivate"),
        (
            vec!["--mount", "type=bind,src=/,dst=/x,bind-propagation=slave"],
            "only rprivate",
        ),
        (vec!["-v", "dd:/x:bogus"], "invalid mode: bogus"),
        (
            vec!["--mount", "type=tmpfs,src=x,dst=/x"],
            "must not be specified",
        ),
        (vec!["--tmpfs", "/x:size=lots"], "invalid size"),
        (
            vec!["--mount", "dst=/x,colour=red"],
            "unexpected key 'colour'",
        ),
        (vec!["-v", &file_onto_dir], "not a directory"),
        (vec!["-v", &dir_onto_file], "not a directory"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&[PLAIN, "true"]);
        let out = lab.run(&args);
        let line = out.fails_with(125);
        assert!(line.contains(message), "{flags:?}: {line}");
        lab.assert_nothing_left(&[]);
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
    let warned = lab.run(&["run", "--rm", "-v", "zz:/z:z", PLAIN, "true"]);
    warned.ok();
    assert!(warned.stderr.contains("SELinux"), "{}", warned.stderr);
    lab.run(&["volume", "rm", "zz"]).ok();
    lab.assert_nothing_left(&[]);
}
