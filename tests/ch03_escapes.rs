//! Chapter 03's escapes, each tried as the exploit a learner would write,
//! and each one must fail:
//! * runc's CVE-2019-5736: a container process grabs the engine's binary
//!   through `/proc/PID/exe` of an engine process passing through the
//!   container (`exec`'s child, `--init`'s PID 1);
//! * the engine root: an unprivileged user of the host reaches an image's
//!   files (a device node, a setuid program) under `ROOT/layers/`.
//!
//! All of it needs root.

use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::containers::Setup;
use support::probes;

const BIN: &str = "ch03-run";

fn sha256_of(path: &Path) -> String {
    format!("{:x}", Sha256::digest(fs::read(path).unwrap()))
}

/// Runs the exe attack in a detached container (`--init` or not) for
/// `seconds`, while the test runs `execs` execs into it; returns the
/// attacker's log.
fn attack(setup: &Setup, init: bool, seconds: u32, execs: usize) -> String {
    let tag = "127.0.0.1:9/exe-attack:latest";
    let mut args = vec!["run", "-d"];
    if init {
        args.push("--init");
    }
    let duration = seconds.to_string();
    args.extend([tag, "/exe_attack", duration.as_str()]);
    let id = setup.run(&args).ok().trim().to_string();
    for i in 0..execs {
        let out = setup.run(&["exec", &id, "/exe_attack"]);
        if out.code != 0 {
            // The container has finished its scans: enough execs for it.
            assert!(i > 0, "exec failed at once: {}", out.stderr);
            break;
        }
    }
    setup.run(&["exec", &id, "/exe_attack", "stop"]).ok();
    let logs = setup.wait_for(&["logs", &id], |log| log.contains("done "));
    setup.run(&["rm", "-f", &id]).ok();
    logs
}

#[test]
fn a_container_never_gets_the_engine_binary_through_proc_exe() {
    if !support::require_root("a_container_never_gets_the_engine_binary_through_proc_exe") {
        return;
    }
    let setup = Setup::new(BIN);
    let attacker = probes::compile("exe_attack");
    probes::load_image(
        &setup.engine,
        BIN,
        "127.0.0.1:9/exe-attack:latest",
        &[("exe_attack", &attacker)],
    );
    let engine = support::bin(BIN);
    let before = sha256_of(&engine);

    // 200 execs: each one's child passes through the container's PID
    // namespace running the engine binary until it execs.
    let log = attack(&setup, false, 120, 200);
    assert!(log.contains("done "), "{log}");
    assert!(
        !log.contains("FOREIGN") && !log.contains("WRITABLE"),
        "a container process opened an engine process's /proc/PID/exe:\n{log}"
    );

    // --init: PID 1 is an engine process for the container's whole life.
    let log = attack(&setup, true, 120, 20);
    assert!(log.contains("done "), "{log}");
    assert!(
        !log.contains("WRITABLE"),
        "the init's binary could be opened for writing:\n{log}"
    );
    assert!(
        !log.contains("FOREIGN"),
        "the init's /proc/1/exe could be opened:\n{log}"
    );

    assert_eq!(sha256_of(&engine), before, "the engine binary changed");
    setup.assert_nothing_left();
}

#[test]
fn init_runs_from_a_sealed_copy_not_the_engine_file() {
    if !support::require_root("init_runs_from_a_sealed_copy_not_the_engine_file") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    // From the host (root may look): PID 1's exe is an anonymous memfd,
    // not the engine's file, and its seals refuse writing.
    let id = setup.detach(&["--init"], &["sleep", "30"]);
    let pid = setup.state(&id)["pid"].as_i64().expect("a running pid");
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:crabbox-init"),
        "PID 1 runs {}",
        exe.display()
    );
    let write = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"));
    assert!(
        write.is_err(),
        "the sealed init could be opened for writing"
    );
    setup.run(&["rm", "-f", &id]).ok();
    // Inside: `ps` still shows the init by name, and the command as its child.
    let out = setup.run(&["run", "--rm", "--init", &image, "cat", "/proc/1/comm"]);
    assert_eq!(out.ok(), "crabbox-init\n");
    setup.assert_nothing_left();
}

#[test]
fn other_users_cannot_reach_the_engine_root() {
    if !support::require_root("other_users_cannot_reach_the_engine_root") {
        return;
    }
    let setup = Setup::new(BIN);
    let root = setup.engine.root.path();
    // A root that other users may enter (as a learner's `mkdir` makes it)
    // is tightened, and the command says so.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let image = setup.image();
    let out = setup.run(&["pull", "-q", &image]);
    out.ok();
    assert!(
        out.stderr.contains("it is now 0700"),
        "no word about the tightened root: {}",
        out.stderr
    );
    let mode = fs::metadata(root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    // An unpacked layer's file, readable by anyone by its own mode, is
    // still out of reach of uid 65534: the path is closed on the way.
    setup.run_rm(&["true"]).ok();
    let busybox = fs::read_dir(root.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/busybox"))
        .find(|p| p.exists())
        .expect("an unpacked busybox");
    let as_nobody = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg("cat")
        .arg(&busybox)
        .output()
        .unwrap();
    assert!(
        !as_nobody.status.success(),
        "uid 65534 read {}",
        busybox.display()
    );
    assert!(
        String::from_utf8_lossy(&as_nobody.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&as_nobody.stderr)
    );
    // A new root is made 0700 from the start.
    let fresh = support::TempDir::new("fresh-root");
    let new_root = fresh.join("engine");
    let out = setup
        .engine
        .command(BIN, &["images"])
        .env("CRABBOX_ROOT", &new_root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = fs::metadata(&new_root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}
