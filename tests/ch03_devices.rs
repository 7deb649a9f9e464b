//! Chapter 03 end to end, the devices cgroup: a container's root may make
//! a device node of the host's disk (`CAP_MKNOD`, as in docker), but not
//! use it. Each attack is a learner's exploit that must fail: a loop
//! device of the host, made with `mknod` or shipped in an image layer,
//! read from the container (as root, as nobody, from `exec`), with the
//! v1 rules alone, the v2 eBPF program alone (the default wherever a
//! cgroup2 tree exists, as on this project's hybrid hosts), and both. Then docker's opt-outs, `--device` and
//! `--privileged`, open the door again, the harmless devices keep
//! working, and no cgroup directory outlives its container.
//! All of it needs root.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::containers::{assert_no_cgroup_left, cgroup_dirs, Setup};
use support::devices::LoopDevice;
use support::{Run, TempDir};

const BIN: &str = "ch03-run";

/// `BIN ARGS` with `CRABBOX_DEVICE_CGROUP` set (or not).
fn run_with(setup: &Setup, choice: Option<&str>, args: &[&str]) -> Run {
    let mut command = setup.engine.command(BIN, args);
    if let Some(choice) = choice {
        command.env("CRABBOX_DEVICE_CGROUP", choice);
    }
    Run::from_output(command.output().unwrap())
}

/// Asserts that the exploit ran into the devices cgroup.
#[track_caller]
fn assert_refused(out: &Run, disk: &LoopDevice, what: &str) {
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_ne!(out.code, 0, "{what}: the read worked:\n{all}");
    assert!(
        all.contains("Operation not permitted"),
        "{what}: not refused by the devices cgroup:\n{all}"
    );
    assert!(
        !all.contains(&disk.secret),
        "{what}: the host's disk leaked:\n{all}"
    );
}

fn mknod_of_a_host_disk_is_made_but_unusable(choice: Option<&str>) {
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let disk = LoopDevice::new();
    let out = run_with(
        &setup,
        choice,
        &[
            "run",
            "--rm",
            &image,
            "sh",
            "-c",
            &format!("cat /proc/self/cgroup; {}", disk.mknod_and_read("/tmp/l")),
        ],
    );
    // Only the chosen way is in force: the container is in a crabbox
    // cgroup of the v1 devices hierarchy, of the v2 tree, or of both.
    let in_v1 = out.stdout.contains(":devices:/crabbox/");
    let in_v2 = out.stdout.contains("0::/crabbox/");
    let expected = match choice {
        Some("v1") => (true, false),
        Some("v2") => (false, true),
        Some(_) => (true, true),
        // The default: the eBPF program wherever a cgroup2 tree exists.
        None => {
            let has_v2 = [
                "/sys/fs/cgroup/cgroup.controllers",
                "/sys/fs/cgroup/unified/cgroup.procs",
            ]
            .iter()
            .any(|f| std::path::Path::new(f).exists());
            (!has_v2, has_v2)
        }
    };
    assert_eq!((in_v1, in_v2), expected, "{choice:?}: {}", out.stdout);
    // docker's rules allow mknod of any node ("b *:* m"): using it is
    // what the cgroup refuses.
    assert!(
        out.stdout.contains("mknod worked"),
        "{choice:?}: {}{}",
        out.stdout,
        out.stderr
    );
    assert_refused(&out, &disk, &format!("CRABBOX_DEVICE_CGROUP={choice:?}"));
    setup.assert_nothing_left();
}

#[test]
fn mknod_of_a_host_disk_is_unusable_by_default() {
    if !support::require_root("mknod_of_a_host_disk_is_unusable_by_default") {
        return;
    }
    mknod_of_a_host_disk_is_made_but_unusable(None);
}

#[test]
fn mknod_of_a_host_disk_is_unusable_with_both_ways() {
    if !support::require_root("mknod_of_a_host_disk_is_unusable_with_both_ways") {
        return;
    }
    mknod_of_a_host_disk_is_made_but_unusable(Some("both"));
}

#[test]
fn mknod_of_a_host_disk_is_unusable_with_v1_rules_alone() {
    if !support::require_root("mknod_of_a_host_disk_is_unusable_with_v1_rules_alone") {
        return;
    }
    mknod_of_a_host_disk_is_made_but_unusable(Some("v1"));
}

#[test]
fn mknod_of_a_host_disk_is_unusable_with_the_v2_program_alone() {
    if !support::require_root("mknod_of_a_host_disk_is_unusable_with_the_v2_program_alone") {
        return;
    }
    mknod_of_a_host_disk_is_made_but_unusable(Some("v2"));
}

#[test]
fn a_disk_node_shipped_in_an_image_layer_is_unusable() {
    if !support::require_root("a_disk_node_shipped_in_an_image_layer_is_unusable") {
        return;
    }
    let setup = Setup::new(BIN);
    let disk = LoopDevice::new();
    // A hostile image: busybox, and a block node of the host's loop
    // device, readable and writable by everyone (0666).
    let busybox = fs::read("/bin/busybox").expect("Debian's busybox-static");
    let layer = support::layers::LayerTar::new()
        .dir("bin", 0o755)
        .file_with_mode("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .symlink("bin/head", "busybox")
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", b"root:x:0:\nnobody:x:65534:\n")
        .device("disk", tar::EntryType::Block, disk.major, disk.minor)
        .into_bytes();
    let dir = TempDir::new("device-image");
    let archive = dir.join("hostile.tar");
    fs::write(
        &archive,
        support::layers::docker_archive("hostile-disk:latest", &[layer]),
    )
    .unwrap();
    setup.run(&["load", "-i", archive.to_str().unwrap()]).ok();
    for user in [None, Some("65534")] {
        let mut args = vec!["run", "--rm"];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        args.extend([
            "hostile-disk",
            "sh",
            "-c",
            "ls -l /disk && head -c 64 /disk",
        ]);
        let out = setup.run(&args);
        assert!(
            out.stdout.starts_with("brw-rw-rw-"),
            "a 0666 block node: {}",
            out.stdout
        );
        assert_refused(&out, &disk, &format!("the image's /disk as user {user:?}"));
    }
    // On the host, the node is in the unpacked layer: an unprivileged
    // user of the host must not reach it (the engine root is 0700).
    let nodes: Vec<PathBuf> = fs::read_dir(setup.engine.root.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("disk"))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert_eq!(nodes.len(), 1, "the layer's node under ROOT/layers");
    let out = Run::from_output(
        Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "head",
                "-c",
                "64",
            ])
            .arg(&nodes[0])
            .output()
            .unwrap(),
    );
    assert_ne!(
        out.code, 0,
        "an unprivileged host user read the host's disk through the engine root"
    );
    assert!(!out.stdout.contains(&disk.secret));
    setup.assert_nothing_left();
}

#[test]
fn device_and_privileged_open_the_door_on_purpose() {
    if !support::require_root("device_and_privileged_open_the_door_on_purpose") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let disk = LoopDevice::new();
    // --device: the node is made in the container's /dev and allowed.
    let out = setup.run(&[
        "run",
        "--rm",
        "--device",
        &disk.path,
        &image,
        "sh",
        "-c",
        &format!("head -c 64 {}", disk.path),
    ]);
    assert!(out.ok().contains(&disk.secret), "{}", out.stdout);
    // Under another name, read-only: reading works, writing is refused.
    let device = format!("{}:/dev/xvdc:r", disk.path);
    let out = setup.run(&[
        "run",
        "--rm",
        "--device",
        &device,
        &image,
        "sh",
        "-c",
        "ls -l /dev/xvdc; head -c 64 /dev/xvdc; echo; echo x > /dev/xvdc",
    ]);
    assert!(
        out.stdout.starts_with('b'),
        "a block device: {}",
        out.stdout
    );
    assert!(out.stdout.contains(&disk.secret), "{}", out.stdout);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    // Not a device: docker's kind of one-line error, exit 125.
    let out = setup.run(&[
        "run",
        "--rm",
        "--device",
        "/etc/hostname:/dev/x",
        &image,
        "true",
    ]);
    let message = out.fails_with(125);
    assert!(message.contains("not a device"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    // --privileged: every device.
    let out = setup.run(&[
        "run",
        "--rm",
        "--privileged",
        &image,
        "sh",
        "-c",
        &disk.mknod_and_read("/tmp/l"),
    ]);
    assert!(out.ok().contains(&disk.secret), "{}", out.stdout);
    setup.assert_nothing_left();
}

#[test]
fn the_harmless_devices_still_work() {
    if !support::require_root("the_harmless_devices_still_work") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    for choice in [None, Some("v1"), Some("v2")] {
        let script = "echo gone > /dev/null && echo null ok; \
                      head -c 1 /dev/urandom | wc -c; head -c 2 /dev/random | wc -c; \
                      head -c 3 /dev/zero | wc -c; \
                      echo x > /dev/full || echo full refused; \
                      exec 3<>/dev/ptmx && echo ptmx ok; \
                      exec 4</dev/tty";
        let out = run_with(&setup, choice, &["run", "--rm", &image, "sh", "-c", script]);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout
                .starts_with("null ok\n1\n2\n3\nfull refused\nptmx ok\n"),
            "{choice:?}: {all}"
        );
        assert!(all.contains("No space left on device"), "{choice:?}: {all}");
        // No terminal: /dev/tty is allowed but has nothing behind it.
        assert!(
            all.contains("No such device or address"),
            "{choice:?}: {all}"
        );
        assert!(!all.contains("not permitted"), "{choice:?}: {all}");
    }
    // With -t, /dev/tty is the container's terminal.
    let out = setup.run_bounded(
        &[
            "run",
            "--rm",
            "-t",
            &image,
            "sh",
            "-c",
            "echo hi > /dev/tty && echo tty ok",
        ],
        Duration::from_secs(30),
    );
    assert!(out.ok().contains("tty ok"), "{}", out.stdout);
    setup.assert_nothing_left();
}

#[test]
fn exec_into_a_container_is_limited_too() {
    if !support::require_root("exec_into_a_container_is_limited_too") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.pulled_image();
    let disk = LoopDevice::new();
    let id = setup.detach(&[], &["sleep", "60"]);
    let out = setup.run(&["exec", &id, "sh", "-c", &disk.mknod_and_read("/tmp/x")]);
    assert!(
        out.stdout.contains("mknod worked"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_refused(&out, &disk, "exec");
    // The exec'd command is in the container's cgroup (the v2 tree's by
    // default; the v1 devices hierarchy's on a host without one).
    let cgroup = setup.run(&["exec", &id, "cat", "/proc/self/cgroup"]);
    let cgroup = cgroup.ok();
    assert!(
        cgroup.contains(&format!("0::/crabbox/{id}\n"))
            || cgroup.contains(&format!(":devices:/crabbox/{id}\n")),
        "{cgroup}"
    );
    setup.run(&["rm", "-f", &id]).ok();
    setup.assert_nothing_left();
}

#[test]
fn no_cgroup_outlives_its_container() {
    if !support::require_root("no_cgroup_outlives_its_container") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    // run --rm: the ID from inside, the directories gone after.
    let out = setup.run(&["run", "--rm", &image, "cat", "/proc/self/cgroup"]);
    let id = out
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("0::/crabbox/"))
        .expect("in a crabbox cgroup of the v2 tree")
        .to_string();
    assert_no_cgroup_left(&id);
    // rm -f of a running container: its cgroup exists while it runs.
    let id = setup.detach(&[], &["sleep", "60"]);
    let devices = &cgroup_dirs(&id)[4];
    let unified = &cgroup_dirs(&id)[5];
    assert!(
        devices.is_dir() || unified.is_dir(),
        "{devices:?} {unified:?}"
    );
    setup.run(&["rm", "-f", &id]).ok();
    assert_no_cgroup_left(&id);
    // rm of an exited one.
    let id = setup.detach(&[], &["true"]);
    setup.wait_for(&["ps", "-a"], |ps| ps.contains("Exited (0)"));
    setup.run(&["rm", &id]).ok();
    assert_no_cgroup_left(&id);
    // A container started twice gets its rules again (one device filter,
    // replaced), and still nothing is left.
    let disk = LoopDevice::new();
    let id = setup.detach(&[], &["sh", "-c", &disk.mknod_and_read("/tmp/again")]);
    setup.wait_for(&["ps", "-a"], |ps| ps.contains("Exited (1)"));
    let out = setup.run(&["start", "-a", &id]);
    assert_refused(&out, &disk, "second start");
    setup.run(&["rm", &id]).ok();
    setup.assert_nothing_left();
}
