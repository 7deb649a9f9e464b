//! Chapter 03's seams, used from outside chapter 03 as chapters 04 to 06
//! use them: `crabbox-seams` (tests/seams/main.rs) is a chapter-03 engine
//! with two extensions combined by `Both`, made without touching chapter
//! 03's files. Each test checks that a seam is really called: an extra
//! flag, a mount saved in the config, the `/etc/hosts` contents, the
//! hooks, `on_remove` on every removal path (a SIGKILLed monitor
//! included), `inspect` and `ps` fields, an in-place `/etc/hosts`
//! rewrite reaching a running container, and a build step with no
//! container record. All of it needs root.

use std::fs;
use std::path::Path;
use support::containers::Setup;
use support::TempDir;

const BIN: &str = "crabbox-seams";

/// The lines of `ROOT/seams-events` (see `Probe` in seams/main.rs).
fn events(setup: &Setup) -> Vec<String> {
    fs::read_to_string(setup.engine.root.join("seams-events"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn has_event(setup: &Setup, prefix: &str) -> bool {
    events(setup).iter().any(|e| e.starts_with(prefix))
}

/// A host directory with `hello.txt` in it.
fn host_dir() -> TempDir {
    let dir = TempDir::new("seams-host");
    fs::write(dir.join("hello.txt"), "from the host\n").unwrap();
    dir
}

#[test]
fn a_flag_a_mount_etc_hosts_and_hooks_on_run_rm() {
    if !support::require_root("a_flag_a_mount_etc_hosts_and_hooks_on_run_rm") {
        return;
    }
    let setup = Setup::new(BIN);
    let host = host_dir();
    let image = setup.pulled_image();
    let mount = format!("{}:/seam", host.path().display());
    let out = setup.run(&[
        "run",
        "--rm",
        "--name",
        "fg",
        "--probe-mount",
        &mount,
        "--probe-note",
        "first",
        &image,
        "sh",
        "-c",
        "cat /seam/hello.txt; grep seam-peer /etc/hosts; echo written > /seam/back.txt",
    ]);
    assert_eq!(
        out.ok(),
        "from the host\n10.9.8.7\tseam-peer\n",
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read_to_string(host.join("back.txt")).unwrap(),
        "written\n"
    );
    for prefix in [
        "create fg",
        "after_create fg ",
        "after_stop fg",
        "on_remove fg note=first",
    ] {
        assert!(
            has_event(&setup, prefix),
            "no {prefix:?}: {:?}",
            events(&setup)
        );
    }
    setup.assert_nothing_left();
}

#[test]
fn start_keeps_the_saved_mount_and_inspect_ps_rm_see_the_extensions() {
    if !support::require_root("start_keeps_the_saved_mount_and_inspect_ps_rm_see_the_extensions") {
        return;
    }
    let setup = Setup::new(BIN);
    let host = host_dir();
    let image = setup.pulled_image();
    let mount = format!("{}:/seam", host.path().display());
    let id = setup
        .run(&[
            "create",
            "--name",
            "kept",
            "--probe-mount",
            &mount,
            "--probe-note",
            "second",
            "--tag",
            "blue",
            &image,
            "cat",
            "/seam/hello.txt",
        ])
        .ok()
        .trim()
        .to_string();
    let config: serde_json::Value = serde_json::from_slice(
        &fs::read(setup.containers().join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["extensions"]["probe"], "second", "{config}");
    assert_eq!(config["extensions"]["tag"], "blue", "{config}");
    // Started twice: the mount comes from the config, not the command line.
    for _ in 0..2 {
        assert_eq!(setup.run(&["start", "-a", "kept"]).ok(), "from the host\n");
    }
    let ps = setup.run(&["ps", "-a"]);
    assert!(ps.ok().contains("probe:second"), "{}", ps.stdout);
    let inspect: serde_json::Value =
        serde_json::from_str(setup.run(&["inspect", "kept"]).ok()).unwrap();
    assert_eq!(inspect[0]["Probe"], "second", "{inspect}");
    assert_eq!(inspect[0]["Tag"], "blue", "{inspect}");
    assert_eq!(inspect[0]["Name"], "/kept", "{inspect}");
    // rm's flag from the second extension, on_remove of both.
    assert_eq!(setup.run(&["rm", "--untag", "kept"]).ok(), "kept\n");
    assert!(
        has_event(&setup, "on_remove kept note=second"),
        "{:?}",
        events(&setup)
    );
    assert!(has_event(&setup, "untag kept blue"), "{:?}", events(&setup));
    assert_eq!(
        events(&setup)
            .iter()
            .filter(|e| e.starts_with("after_stop kept"))
            .count(),
        2
    );
    setup.assert_nothing_left();
}

#[test]
fn on_remove_runs_after_the_monitor_was_sigkilled_and_on_prune() {
    if !support::require_root("on_remove_runs_after_the_monitor_was_sigkilled_and_on_prune") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.pulled_image();
    let id = setup.detach(
        &["--name", "orphan", "--probe-note", "killed"],
        &["sleep", "1000"],
    );
    assert!(
        has_event(&setup, "after_create orphan "),
        "{:?}",
        events(&setup)
    );
    let monitor = setup.state(&id)["monitor_pid"]
        .as_i64()
        .expect("monitor_pid");
    assert_ne!(monitor, 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(setup.run(&["rm", "-f", "orphan"]).ok(), "orphan\n");
    assert!(
        has_event(&setup, "on_remove orphan note=killed"),
        "{:?}",
        events(&setup)
    );
    // The monitor died before PID 1 did: nobody ran after_stop.
    assert!(
        !has_event(&setup, "after_stop orphan"),
        "{:?}",
        events(&setup)
    );

    // prune, and the monitor's own --rm.
    setup
        .run(&[
            "run",
            "--name",
            "stopped",
            "--probe-note",
            "pruned",
            &setup.image(),
            "true",
        ])
        .ok();
    let detached = setup.detach(
        &["--rm", "--name", "gone", "--probe-note", "monitor"],
        &["true"],
    );
    setup.run(&["prune", "-f"]).ok();
    assert!(
        has_event(&setup, "on_remove stopped note=pruned"),
        "{:?}",
        events(&setup)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while setup.containers().join(&detached).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "run -d --rm left its container"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        has_event(&setup, "on_remove gone note=monitor"),
        "{:?}",
        events(&setup)
    );
    setup.assert_nothing_left();
}

#[test]
fn etc_hosts_rewritten_in_place_reaches_a_running_container() {
    if !support::require_root("etc_hosts_rewritten_in_place_reaches_a_running_container") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.pulled_image();
    let id = setup.detach(&["--name", "peer"], &["sleep", "1000"]);
    let dir = setup.containers().join(&id);
    let hosts = setup.run(&["exec", "peer", "cat", "/etc/hosts"]);
    assert!(hosts.ok().contains("seam-peer"), "{}", hosts.stdout);
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let before = inode(&dir.join("hosts"));
    ch03_run::etc::rewrite_etc_file(&dir, "hosts", "10.1.2.3\tnew-peer\n").unwrap();
    assert_eq!(inode(&dir.join("hosts")), before, "the file was replaced");
    let hosts = setup.run(&["exec", "peer", "cat", "/etc/hosts"]);
    assert_eq!(hosts.ok(), "10.1.2.3\tnew-peer\n");
    assert!(ch03_run::etc::rewrite_etc_file(&dir, "passwd", "x").is_err());
    setup.run(&["rm", "-f", "peer"]).ok();
    setup.assert_nothing_left();
}

#[test]
fn a_build_step_runs_with_no_record_on_the_hosts_network() {
    if !support::require_root("a_build_step_runs_with_no_record_on_the_hosts_network") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let out = setup.run(&[
        "step",
        &image,
        "sh",
        "-c",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/pid; cat /etc/resolv.conf; exit 3",
    ]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let host_net = fs::read_link("/proc/self/ns/net").unwrap();
    let host_pid = fs::read_link("/proc/self/ns/pid").unwrap();
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(host_net.to_str().unwrap()),
        "not the host's network"
    );
    assert_ne!(
        lines.next(),
        Some(host_pid.to_str().unwrap()),
        "no PID namespace of its own"
    );
    let resolv: Vec<&str> = lines.collect();
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(
        resolv,
        host_resolv.lines().collect::<Vec<_>>(),
        "not the host's resolv.conf"
    );
    // No container record: nothing in ps -a, nothing left.
    assert_eq!(setup.run(&["ps", "-a", "-q"]).ok(), "");
    assert!(!setup
        .engine
        .root
        .join("steps")
        .read_dir()
        .unwrap()
        .any(|_| true));
    setup.assert_nothing_left();
}
