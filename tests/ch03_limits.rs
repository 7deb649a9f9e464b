//! Chapter 03 end to end, the limits and the terminal: `--memory`,
//! `--pids-limit` and `--cpus` through cgroups (v2 or v1, whichever the
//! host has), `--init` as PID 1, and `-it` (run and exec) and `-d -t`
//! through real pseudo-terminals.
//! All of it needs root.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::containers::{cgroup_dirs, wait_bounded, Setup};

const BIN: &str = "ch03-run";

/// The container's cgroup id, from `/proc/self/cgroup` inside it.
fn crabbox_ids(proc_self_cgroup: &str) -> Vec<String> {
    let mut ids: Vec<String> = proc_self_cgroup
        .lines()
        .filter_map(|l| l.split_once("/crabbox/").map(|(_, id)| id.to_string()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn memory_limit_kills_a_hog_with_137() {
    if !support::require_root("memory_limit_kills_a_hog_with_137") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    // The shell keeps 64 MB of 'a's in a variable: far above 16m.
    let hog = r#"x=$(head -c 64000000 /dev/zero | tr "\0" a); echo survived ${#x}"#;
    let out = setup.run_bounded(
        &[
            "run", "--name", "hog", "--memory", "16m", &image, "sh", "-c", hog,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.code, 137,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(!out.stdout.contains("survived"), "{}", out.stdout);
    // The kernel's OOM killer did it, and inspect says so (as docker).
    let inspect: serde_json::Value =
        serde_json::from_str(setup.run(&["inspect", "hog"]).ok()).unwrap();
    assert_eq!(inspect[0]["State"]["OOMKilled"], true);
    assert_eq!(inspect[0]["HostConfig"]["Memory"], 16 * 1024 * 1024);
    setup.run(&["rm", "hog"]).ok();
    // Without the limit the same hog survives.
    let out = setup.run_bounded(
        &["run", "--rm", &image, "sh", "-c", hog],
        Duration::from_secs(60),
    );
    assert_eq!(out.ok(), "survived 64000000\n");
}

#[test]
fn pids_limit_contains_a_fork_loop() {
    if !support::require_root("pids_limit_contains_a_fork_loop") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    // The inner shell forks sleepers until fork fails; the outer one
    // (PID 1) survives it and reports, with builtins only.
    let script = "sh -c 'while true; do sleep 30 & done' 2>/dev/null; echo survived";
    let started = Instant::now();
    let out = setup.run_bounded(
        &[
            "run",
            "--rm",
            "--pids-limit",
            "20",
            &image,
            "sh",
            "-c",
            script,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.ok(), "survived\n");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The host can still fork.
    assert_eq!(support::sh("echo host fine").ok(), "host fine\n");
}

#[test]
fn the_cgroup_holds_the_limits_and_is_gone_after_rm() {
    if !support::require_root("the_cgroup_holds_the_limits_and_is_gone_after_rm") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let out = setup.run(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        &image,
        "cat",
        "/proc/self/cgroup",
    ]);
    let ids = crabbox_ids(out.ok());
    assert_eq!(
        ids.len(),
        1,
        "the container is in one crabbox cgroup: {}",
        out.stdout
    );
    for dir in cgroup_dirs(&ids[0]) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    // The limits as the kernel holds them, read while the container runs.
    let mut command = setup.engine.command(
        BIN,
        &[
            "run",
            "--rm",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "--cpus",
            "0.5",
            &image,
            "sleep",
            "30",
        ],
    );
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        let pid = setup.container_dirs().iter().find_map(|dir| {
            let state = fs::read(dir.join("state.json")).unwrap_or_default();
            let state: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
            state["pid"].as_i64()
        });
        if let Some(pid) = pid {
            break pid;
        }
        assert!(Instant::now() < deadline, "the container never ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    let ids = crabbox_ids(&fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    let read = |p: PathBuf| {
        fs::read_to_string(&p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let v2 = Path::new("/sys/fs/cgroup/crabbox").join(id);
    if v2.join("cgroup.procs").exists() {
        assert_eq!(read(v2.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(v2.join("pids.max")), "50");
        assert_eq!(read(v2.join("cpu.max")), "50000 100000");
    } else {
        let v1 = |c: &str| Path::new("/sys/fs/cgroup").join(c).join("crabbox").join(id);
        assert_eq!(
            read(v1("memory").join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(v1("pids").join("pids.max")), "50");
        assert_eq!(read(v1("cpu").join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(v1("cpu").join("cpu.cfs_period_us")), "100000");
        assert!(read(v1("pids").join("cgroup.procs"))
            .split_whitespace()
            .any(|p| p == pid.to_string()));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = wait_bounded(child, Duration::from_secs(20));
    assert_eq!(out.code, 137, "{}", out.stderr);
    for dir in cgroup_dirs(id) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn init_is_pid_1_and_reaps_orphans() {
    if !support::require_root("init_is_pid_1_and_reaps_orphans") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    // The inner shell leaves a sleep behind, orphaned: it becomes PID 1's
    // child, and exits a moment later. Then: PID 1's name and every
    // process's state (the third field of /proc/PID/stat).
    let script = r#"sh -c "sleep 0.2 &"; sleep 1; cat /proc/1/comm; cat /proc/[0-9]*/stat; exit 5"#;
    let out = setup.run_bounded(
        &["run", "--rm", "--init", &image, "sh", "-c", script],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 5, "the command's exit code: {}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("crabbox-init"));
    let states: Vec<&str> = lines
        .filter_map(|l| l.rsplit_once(") ").map(|(_, rest)| &rest[..1]))
        .collect();
    assert!(!states.is_empty(), "{}", out.stdout);
    assert!(!states.contains(&"Z"), "a zombie is left:\n{}", out.stdout);
    // PID 1's command line is the init's, not the engine's (no host path).
    let out = setup.run_bounded(
        &["run", "--rm", "--init", &image, "cat", "/proc/1/cmdline"],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.ok().trim_end_matches('\0'),
        "/sbin/crabbox-init\0--\0cat\0/proc/1/cmdline"
    );
    // A missing command is still 127 under the init.
    let out = setup.run_bounded(
        &["run", "--rm", "--init", &image, "nothere"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 127, "{}", out.stderr);
}

/// Runs `ch03-run ARGS` with a terminal of the test's own as its stdin,
/// stdout and stderr, writes `input` to it, returns what came out and the
/// exit code. Asserts that the terminal's settings are the same afterwards
/// (raw mode was undone).
fn run_on_a_pty(setup: &Setup, args: &[&str], input: &[u8]) -> (String, i32) {
    // A 30x100 window, which the container's terminal must copy.
    let size = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let probe = pty.slave.try_clone().unwrap();
    let settings = |fd: &std::os::fd::OwnedFd| {
        let t = nix::sys::termios::tcgetattr(fd).unwrap();
        format!(
            "{:?} {:?} {:?} {:?}",
            t.input_flags, t.output_flags, t.local_flags, t.control_flags
        )
    };
    let before = settings(&probe);
    let slave = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut command = setup.engine.command(BIN, args);
    command
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave));
    let child = command.spawn().unwrap();
    drop(command);
    drop(pty.slave);
    let mut master = fs::File::from(pty.master);
    master.write_all(input).unwrap();
    let mut reader = master.try_clone().unwrap();
    let output = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once every slave descriptor is closed.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let run = wait_bounded(child, Duration::from_secs(30));
    assert_eq!(settings(&probe), before, "the terminal was not restored");
    drop(probe);
    drop(master);
    (output.join().unwrap(), run.code)
}

#[test]
fn it_gives_an_interactive_shell_on_a_real_terminal() {
    if !support::require_root("it_gives_an_interactive_shell_on_a_real_terminal") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let (out, code) = run_on_a_pty(
        &setup,
        &["run", "--rm", "-it", &image, "sh"],
        b"stty size\necho $((6*7))\nexit 3\n",
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("\r\n42\r\n"), "{out:?}");
    assert!(out.contains("\r\n30 100\r\n"), "the window size: {out:?}");
    // `tty` inside: the container's own /dev/pts.
    let (out, code) = run_on_a_pty(&setup, &["run", "--rm", "-t", &image, "tty"], b"");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    // Without -t: not a terminal.
    let out = setup.run(&["run", "--rm", &image, "tty"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "not a tty\n");
}

#[test]
fn exec_it_and_detached_tty_use_real_terminals() {
    if !support::require_root("exec_it_and_detached_tty_use_real_terminals") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    // -d -t: the container writes to a terminal; the monitor logs it.
    let out = setup.run(&[
        "run",
        "-d",
        "-t",
        "--name",
        "term",
        &image,
        "sh",
        "-c",
        "tty; echo ready; exec sleep 1000",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs = setup.run(&["logs", "term"]).ok().to_string();
        if logs.contains("ready") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A terminal turns "\n" into "\r\n", as `docker logs` shows for -t.
    assert_eq!(logs, "/dev/pts/0\r\nready\r\n");
    // exec -it: a shell on a new terminal of the container's devpts,
    // with the caller's window size and the command's exit code.
    let (out, code) = run_on_a_pty(
        &setup,
        &["exec", "-it", "term", "sh"],
        b"stty size; tty; echo $((6*7))\nexit 5\n",
    );
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("\r\n30 100\r\n"), "the window size: {out:?}");
    assert!(out.contains("\r\n/dev/pts/1\r\n"), "{out:?}");
    assert!(out.contains("\r\n42\r\n"), "{out:?}");
    // exec without -t: no terminal.
    let out = setup.run(&["exec", "term", "tty"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, "not a tty\n"));
    let out = setup.run(&["rm", "-f", "term"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(setup.container_dirs().is_empty());
}
