//! Chapter 03 end to end: `ch03-run run` driven as a learner would, with
//! the fixture `busybox` image from a real registry: output and exit codes
//! as docker's, the isolation a container must have (PID 1, hostname, its
//! own mounts and processes, no host paths), docker's hardening
//! (capabilities, no_new_privs, no leaked descriptors), signals, and
//! nothing left behind. All of it needs root.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::containers::{mounts_under, Setup};
use support::{Run, TempDir};

const BIN: &str = "ch03-run";

#[test]
fn stdout_and_stderr_are_the_containers_exactly() {
    if !support::require_root("stdout_and_stderr_are_the_containers_exactly") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.run(&["pull", "-q", &setup.image()]).ok();
    let out = setup.run_rm(&["sh", "-c", "echo out; echo err >&2; printf 'no newline'"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "out\nno newline");
    assert_eq!(out.stderr, "err\n");
    setup.assert_nothing_left();
}

#[test]
fn exit_codes_are_dockers() {
    if !support::require_root("exit_codes_are_dockers") {
        return;
    }
    let setup = Setup::new(BIN);
    assert_eq!(setup.run_rm(&["true"]).code, 0);
    assert_eq!(setup.run_rm(&["sh", "-c", "exit 7"]).code, 7);
    let line = setup.run_rm(&["/etc/passwd"]).fails_with(126).to_string();
    assert!(line.contains("permission denied"), "{line}");
    let line = setup.run_rm(&["nosuchcmd"]).fails_with(127).to_string();
    assert_eq!(
        line,
        r#"run: exec: "nosuchcmd": executable file not found in $PATH"#
    );
    assert_eq!(
        setup.run_rm(&["/no/such/path"]).fails_with(127),
        r#"run: exec: "/no/such/path": no such file or directory"#
    );
    // An unknown image: the engine fails (125), after docker's first line.
    let unknown = setup.run(&[
        "run",
        "--rm",
        &format!("{}/nosuchimage", setup.registry.addr()),
    ]);
    assert_eq!(unknown.code, 125, "{}", unknown.stderr);
    assert!(
        unknown.stderr.starts_with("Unable to find image"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown
            .stderr
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("run: "),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stdout.is_empty(), "{}", unknown.stdout);
    setup.assert_nothing_left();
}

#[test]
fn the_command_is_pid_1_with_its_own_hostname_processes_and_mounts() {
    if !support::require_root("the_command_is_pid_1_with_its_own_hostname_processes_and_mounts") {
        return;
    }
    let setup = Setup::new(BIN);
    assert_eq!(setup.sh("echo $$"), "1\n");
    // `ps` sees the shell (PID 1) and itself: none of the host's processes.
    let ps = setup.sh("ps -o pid,comm; true");
    let pids: Vec<&str> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{ps}");
    assert_eq!(pids[0], "1", "{ps}");
    // The default hostname: the first 12 hex digits of the container's ID.
    let image = setup.image();
    let out = setup.run(&[
        "run",
        "--name",
        "kept",
        &image,
        "sh",
        "-c",
        "hostname; cat /etc/hostname",
    ]);
    let dirs = setup.container_dirs();
    assert_eq!(dirs.len(), 1);
    let id = dirs[0].file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(out.ok(), format!("{0}\n{0}\n", &id[..12]));
    assert_ne!(
        id[..12],
        *nix::unistd::gethostname().unwrap().to_string_lossy()
    );
    let out = setup.run(&[
        "run",
        "--rm",
        "--hostname",
        "web",
        &image,
        "sh",
        "-c",
        "hostname; cat /etc/hostname; grep web /etc/hosts",
    ]);
    assert_eq!(out.ok(), "web\nweb\n127.0.1.1\tweb\n");
    // Only loopback, and it is up.
    let links = setup.sh("ls /sys/class/net; ping -c 1 -W 1 127.0.0.1 >/dev/null && echo pong");
    assert_eq!(links, "lo\npong\n");
}

#[test]
fn the_host_filesystem_is_not_visible() {
    if !support::require_root("the_host_filesystem_is_not_visible") {
        return;
    }
    let setup = Setup::new(BIN);
    let secret_dir = TempDir::new("ch03-secret");
    let secret = secret_dir.join("secret.txt");
    fs::write(&secret, "host only").unwrap();
    let script = format!(
        "test -e {} && echo visible || echo hidden",
        secret.display()
    );
    assert_eq!(setup.sh(&script), "hidden\n");
    // `mount` lists the container's own mounts, none at a host path.
    let mounts = setup.sh("mount");
    let expected = [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
    ];
    let mount_points: Vec<&str> = mounts
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    for wanted in expected {
        assert!(
            mount_points.contains(&wanted),
            "{wanted} missing:\n{mounts}"
        );
    }
    for mount_point in &mount_points {
        let known = expected.contains(mount_point)
            || mount_point.starts_with("/proc/")
            || mount_point.starts_with("/sys/");
        assert!(known, "unexpected mount {mount_point}:\n{mounts}");
    }
    assert!(!mounts.contains(" on /work"), "{mounts}");
    // The masked and read-only paths.
    assert_eq!(
        setup.sh("cat /proc/keys | wc -c; ls /sys/firmware | wc -l"),
        "0\n0\n"
    );
    let write = setup.run_rm(&["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]);
    assert_ne!(write.code, 0, "/proc/sys is writable");
    assert!(
        write.stderr.contains("Read-only file system"),
        "{}",
        write.stderr
    );
    // The minimal /dev.
    let dev = setup.sh("ls /dev | tr '\\n' ' '; head -c 4 /dev/zero | wc -c");
    assert_eq!(
        dev,
        "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero 4\n"
    );
    setup.assert_nothing_left();
}

#[test]
fn hardening_is_dockers_default() {
    if !support::require_root("hardening_is_dockers_default") {
        return;
    }
    let setup = Setup::new(BIN);
    let status =
        setup.sh("grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs)' /proc/self/status");
    assert_eq!(
        status,
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n"
    );
    assert_eq!(
        format!("{:016x}", ch03_run::capabilities::default_mask()),
        "00000000a80425fb"
    );
    // A user gets no capabilities at all (the bounding set stays docker's).
    let image = setup.image();
    let out = setup.run(&[
        "run",
        "--rm",
        "--user",
        "1000:1000",
        &image,
        "sh",
        "-c",
        "id; grep -E '^(CapEff|CapBnd)' /proc/self/status",
    ]);
    assert_eq!(
        out.ok(),
        "uid=1000 gid=1000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );
}

#[test]
fn explain_narrates_each_kernel_step_with_its_shell_command() {
    if !support::require_root("explain_narrates_each_kernel_step_with_its_shell_command") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let out = setup.run(&[
        "--explain",
        "run",
        "--rm",
        "--hostname",
        "narrated",
        &image,
        "true",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let mut last = 0;
    // Each step, in the order it happens.
    for step in [
        "$ cd ",
        "mount -t overlay overlay -o lowerdir=",
        "$ unshare --mount --uts --ipc --pid --net --fork",
        "$ mount --make-rprivate /",
        "$ mount -t proc -o nosuid,noexec,nodev proc /proc",
        "$ mount -t tmpfs -o nosuid,strictatime,mode=755,size=65536k tmpfs /dev",
        "$ mount -t sysfs -o nosuid,noexec,nodev,ro sysfs /sys",
        "/dev/null c 1 3",
        "$ ip link set lo up",
        "$ hostname narrated",
        "pivot_root . .pivot_root",
        "$ umount -l /.pivot_root",
        "mount --bind /dev/null /proc/kcore",
        "CAP_SETFCAP), drop the rest",
        "$ setpriv --no-new-privs",
        "$ exec true",
        "$ umount ",
        "$ rm -rf ",
    ] {
        let found = out.stderr[last..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing (or out of order) in:\n{}", out.stderr));
        last += found;
    }
    // And the whole narration, as a reader sees it (the book quotes it).
    let root = setup.engine.root.path().display().to_string();
    let narration = out.stderr.replace(&root, "$ROOT");
    insta::with_settings!({filters => vec![
        (r"[0-9a-f]{64}", "[ID]"),
        (r"\b[0-9a-f]{12}\b", "[SHORT-ID]"),
        (r"PID \d+ on the host", "PID [N] on the host"),
        (r"\([a-z]+_[a-z]+\) in ", "([GENERATED NAME]) in "),
        (r"/proc/\d+/ns", "/proc/[N]/ns"),
        (r"echo \d+ > ", "echo [N] > "),
    ]}, {
        insta::assert_snapshot!("explain_run", narration);
    });
}

#[test]
fn ignored_signals_do_not_leak_into_the_container() {
    if !support::require_root("ignored_signals_do_not_leak_into_the_container") {
        return;
    }
    let setup = Setup::new(BIN);
    // `yes` only stops when SIGPIPE kills it; an inherited SIG_IGN would
    // make it loop forever on EPIPE.
    assert_eq!(setup.sh("yes | head -n 2"), "y\ny\n");
    // (Asked of grep itself: busybox sh ignores a few signals of its own.)
    assert_eq!(
        setup.run_rm(&["grep", "SigIgn", "/proc/self/status"]).ok(),
        "SigIgn:\t0000000000000000\n"
    );
}

#[test]
fn only_fds_0_1_2_reach_the_command() {
    if !support::require_root("only_fds_0_1_2_reach_the_command") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    // Give `run` an extra inheritable descriptor, as a careless caller
    // might: it must not reach the container.
    let leak = fs::File::open("/etc/hostname").unwrap();
    let leak_fd = std::os::fd::AsRawFd::as_raw_fd(&leak);
    let mut command = setup.engine.command(
        BIN,
        &["run", "--rm", &image, "sh", "-c", "ls /proc/$$/fd; true"],
    );
    // SAFETY: dup2 is async-signal-safe; runs in the forked child before exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(leak_fd, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = Run::from_output(command.output().unwrap());
    // `; true` keeps sh from exec'ing ls, so the list is PID 1's own.
    assert_eq!(out.ok(), "0\n1\n2\n");
}

#[test]
fn image_config_and_overrides_follow_dockers_rules() {
    if !support::require_root("image_config_and_overrides_follow_dockers_rules") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    let out = setup.run(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-w",
        "/work/dir",
        "--entrypoint",
        "sh",
        &image,
        "-c",
        "echo $GREETING; pwd; echo $HOME; echo $PATH",
    ]);
    assert_eq!(
        out.ok(),
        "hi\n/work/dir\n/root\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    // The image's CMD (sh) with stdin at /dev/null: it reads EOF and exits 0.
    assert_eq!(setup.run(&["run", "--rm", &image]).code, 0);
}

#[test]
fn a_container_without_rm_stays_exited_with_its_code() {
    if !support::require_root("a_container_without_rm_stays_exited_with_its_code") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    let out = setup.run(&[
        "run",
        "--name",
        "keeper",
        &image,
        "sh",
        "-c",
        "echo kept > /file; exit 3",
    ]);
    assert_eq!(out.code, 3);
    let dirs = setup.container_dirs();
    assert_eq!(dirs.len(), 1);
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dirs[0].join("state.json")).unwrap()).unwrap();
    assert_eq!(state["status"], "exited");
    assert_eq!(state["exit_code"], 3);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(dirs[0].join("config.json")).unwrap()).unwrap();
    assert_eq!(config["name"], "keeper");
    // Its writable layer is kept, unmounted.
    assert_eq!(
        fs::read_to_string(dirs[0].join("upper/file")).unwrap(),
        "kept\n"
    );
    assert_eq!(mounts_under(setup.engine.root.path()), Vec::<String>::new());
    // Names are unique.
    let again = setup.run(&["run", "--name", "keeper", &image, "true"]);
    assert!(
        again.fails_with(125).contains("already in use"),
        "{}",
        again.stderr
    );
    // Removing the image keeps the layers the kept container still needs.
    let layers = || {
        fs::read_dir(setup.engine.root.join("layers"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().len() == 64)
            .count()
    };
    let before = layers();
    assert!(before > 0);
    // As docker: an image a container was created from stays unless -f.
    let refused = setup.run(&["rmi", &image]);
    let id = dirs[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        refused.fails_with(1).contains(&format!(
            "container {} is using its referenced image",
            &id[..12]
        )),
        "{}",
        refused.stderr
    );
    assert!(setup.run(&["images"]).ok().contains("busybox"));
    assert!(setup.run(&["rmi", "-f", &image]).ok().contains("Untagged"));
    assert_eq!(
        layers(),
        before,
        "a kept container's layers must stay after rmi"
    );
}

#[test]
fn a_killed_foreground_run_takes_its_container_with_it() {
    if !support::require_root("a_killed_foreground_run_takes_its_container_with_it") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let mut run = setup
        .engine
        .command(BIN, &["run", "--name", "fg", &image, "sleep", "1000"]);
    run.stdout(Stdio::null()).stderr(Stdio::null());
    let mut run = run.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        let dirs = setup.container_dirs();
        let state: serde_json::Value = dirs
            .first()
            .and_then(|d| fs::read(d.join("state.json")).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(pid) = state["pid"].as_i64() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the container never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    run.kill().unwrap(); // SIGKILL: no chance to clean up
    run.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the container's PID 1 outlived its run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(setup.run(&["ps", "-a"]).ok().contains("Exited (255)"));
    // What the killed run could not do, rm does.
    setup.run(&["rm", "fg"]).ok();
    setup.assert_nothing_left();
}

#[test]
fn stop_signal_hostname_flag_and_logs_of_a_foreground_container() {
    if !support::require_root("stop_signal_hostname_flag_and_logs_of_a_foreground_container") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    // --stop-signal: what `stop` sends first (an image's STOPSIGNAL too).
    let id = setup.detach(
        &["--stop-signal", "USR1", "--stop-timeout", "5"],
        &[
            "sh",
            "-c",
            "trap 'echo got USR1; exit 3' USR1; echo ready; while true; do sleep 0.05; done",
        ],
    );
    setup.wait_for(&["logs", &id], |out| out == "ready\n");
    let started = Instant::now();
    setup.run(&["stop", &id]).ok();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGKILL was needed"
    );
    assert_eq!(setup.run(&["logs", &id]).ok(), "ready\ngot USR1\n");
    let inspect: serde_json::Value =
        serde_json::from_str(setup.run(&["inspect", &id]).ok()).unwrap();
    assert_eq!(inspect[0]["Config"]["StopSignal"], "USR1");
    assert_eq!(inspect[0]["Config"]["StopTimeout"], 5);
    assert_eq!(inspect[0]["State"]["ExitCode"], 3);
    assert_eq!(inspect[0]["State"]["OOMKilled"], false);
    let bad = setup.run(&["run", "--rm", "--stop-signal", "NOPE", &image, "true"]);
    assert!(
        bad.fails_with(125).contains("invalid signal"),
        "{}",
        bad.stderr
    );
    // -h is --hostname, as with docker.
    let out = setup.run(&["run", "--name", "fg", "-h", "box", &image, "hostname"]);
    assert_eq!(out.ok(), "box\n");
    // A foreground container's output went to the terminal, not to a log.
    let logs = setup.run(&["logs", "fg"]);
    assert!(
        logs.fails_with(1).contains("ran in the foreground"),
        "{}",
        logs.stderr
    );
    setup.run(&["rm", &id, "fg"]).ok();
    setup.assert_nothing_left();
}

#[test]
fn signals_are_forwarded_and_a_killed_container_exits_128_plus_n() {
    if !support::require_root("signals_are_forwarded_and_a_killed_container_exits_128_plus_n") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let start = |script: &str| {
        let mut command = setup
            .engine
            .command(BIN, &["run", "--name", "sig", &image, "sh", "-c", script]);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    // Waits until the container runs, returns its host PID.
    let running_pid = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for dir in setup.container_dirs() {
                let state = fs::read(dir.join("state.json")).unwrap_or_default();
                let state: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
                if let Some(pid) = state["pid"].as_i64() {
                    return nix::unistd::Pid::from_raw(pid as i32);
                }
            }
            assert!(Instant::now() < deadline, "the container never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // SIGTERM to `run` reaches the container's PID 1, which handles it.
    let child =
        start("trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.05; done");
    running_pid();
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "ready\ngot TERM\n");
    for dir in setup.container_dirs() {
        fs::remove_dir_all(dir).unwrap();
    }
    // SIGKILL from the host: 128 + 9.
    let child = start("sleep 100");
    nix::sys::signal::kill(running_pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    let out = Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(out.code, 137, "{}", out.stderr);
}

#[test]
fn a_present_image_runs_with_the_registry_stopped() {
    if !support::require_root("a_present_image_runs_with_the_registry_stopped") {
        return;
    }
    let mut setup = Setup::new(BIN);
    // The first run pulls (messages on stderr, stdout stays the container's).
    let first = setup.run_rm(&["echo", "one"]);
    assert_eq!(first.ok(), "one\n");
    assert!(
        first.stderr.contains("Unable to find image"),
        "{}",
        first.stderr
    );
    setup.registry.stop();
    let second = setup.run_rm(&["echo", "two"]);
    assert_eq!(second.ok(), "two\n");
    assert_eq!(second.stderr, "");
    setup.assert_nothing_left();
}

#[test]
fn a_hundred_runs_leave_nothing_behind() {
    if !support::require_root("a_hundred_runs_leave_nothing_behind") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.run(&["pull", "-q", &setup.image()]).ok();
    for i in 0..100 {
        let out = setup.run_rm(&["true"]);
        assert_eq!(out.code, 0, "run {i}: {}", out.stderr);
    }
    // Failures clean up too.
    setup.run_rm(&["nosuchcmd"]).fails_with(127);
    setup.assert_nothing_left();
    // The shared layer is still there for the next container.
    let layers = fs::read_dir(setup.engine.root.join("layers")).unwrap();
    assert!(layers.count() > 0, "the shared layers are gone");
}

// ---- detached containers: run -d, ps, logs, stop, kill, rm, exec ----

/// Is this host PID a live process (not a zombie)?
fn process_alive(pid: i64) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[test]
fn detached_run_logs_ps_stop_and_rm() {
    if !support::require_root("detached_run_logs_ps_stop_and_rm") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.run(&["pull", "-q", &setup.image()]).ok();
    let started = Instant::now();
    let id = setup.detach(
        &["--name", "web"],
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; trap 'echo bye; exit 3' TERM; while true; do sleep 0.05; done",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(5), "run -d waited");
    // logs: stdout and stderr, each to its own stream.
    setup.wait_for(&["logs", "web"], |out| out == "out\n");
    let logs = setup.run(&["logs", &id[..8]]);
    assert_eq!(logs.stderr, "err\n");
    let log_file = setup.containers().join(&id).join(format!("{id}-json.log"));
    let first: serde_json::Value = serde_json::from_str(
        fs::read_to_string(&log_file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        first["stream"].is_string() && first["time"].is_string(),
        "{first}"
    );
    // ps: docker's columns, the short ID, quoted command, "Up …".
    let ps = setup.run(&["ps"]).ok().to_string();
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines.len(), 2, "{ps}");
    for column in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(lines[0].contains(column), "{ps}");
    }
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(lines[1].contains("\"sh -c 'echo out; ec…\""), "{ps}");
    assert!(lines[1].contains("Up "), "{ps}");
    assert!(lines[1].ends_with("web"), "{ps}");
    assert_eq!(setup.run(&["ps", "-q"]).ok(), format!("{}\n", &id[..12]));
    assert_eq!(
        setup.run(&["ps", "-q", "--no-trunc"]).ok(),
        format!("{id}\n")
    );
    // inspect: the container first, and images still work.
    let inspect: serde_json::Value =
        serde_json::from_str(setup.run(&["inspect", "web"]).ok()).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["Name"], "/web");
    assert_eq!(inspect[0]["State"]["Status"], "running");
    assert_eq!(inspect[0]["State"]["Running"], true);
    let pid = inspect[0]["State"]["Pid"].as_i64().unwrap();
    assert!(process_alive(pid));
    let image: serde_json::Value =
        serde_json::from_str(setup.run(&["inspect", &setup.image()]).ok()).unwrap();
    assert!(image[0]["RootFS"].is_object(), "{image}");
    setup.run(&["inspect", "nosuchthing"]).fails_with(1);
    // rm refuses a running container without -f, as docker does.
    let refused = setup.run(&["rm", "web"]);
    assert!(
        refused.fails_with(1).contains("container is running"),
        "{}",
        refused.stderr
    );
    // stop: SIGTERM reaches the trap; prints the name as given.
    assert_eq!(setup.run(&["stop", "web"]).ok(), "web\n");
    assert_eq!(setup.run(&["logs", "web"]).stdout, "out\nbye\n");
    assert_eq!(setup.run(&["ps", "-q"]).ok(), "");
    let ps = setup.run(&["ps", "-a"]).ok().to_string();
    assert!(ps.contains("Exited (3) "), "{ps}");
    assert!(!process_alive(pid));
    assert_eq!(mounts_under(setup.engine.root.path()), Vec::<String>::new());
    let inspect: serde_json::Value =
        serde_json::from_str(setup.run(&["inspect", &id]).ok()).unwrap();
    assert_eq!(inspect[0]["State"]["ExitCode"], 3);
    setup.run(&["kill", "web"]).fails_with(1);
    assert_eq!(setup.run(&["rm", "web"]).ok(), "web\n");
    setup.run(&["rm", "web"]).fails_with(1);
    // prune removes what is stopped, and only that.
    let kept = setup.detach(&[], &["sleep", "100"]);
    setup
        .run(&["run", "--name", "done", &setup.image(), "true"])
        .ok();
    let pruned = setup.run(&["prune", "-f"]).ok().to_string();
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert_eq!(setup.container_dirs().len(), 1);
    assert_eq!(setup.run(&["kill", &kept]).ok(), format!("{kept}\n"));
    setup.wait_for(&["ps", "-a"], |ps| ps.contains("Exited (137)"));
    // logs -f follows until the container exits.
    let talker = setup.detach(&[], &["sh", "-c", "echo a; sleep 0.5; echo b >&2; echo c"]);
    let followed = setup.run(&["logs", "-f", &talker]);
    assert_eq!(
        (followed.stdout.as_str(), followed.stderr.as_str()),
        ("a\nc\n", "b\n")
    );
    setup.run(&["rm", &talker]).ok();
    // A command that cannot run: docker's code and message, at once.
    let image = setup.image();
    let missing = setup.run(&["run", "-d", "--rm", &image, "nosuchcmd"]);
    assert_eq!(
        missing.fails_with(127),
        r#"run: exec: "nosuchcmd": executable file not found in $PATH"#
    );
    // run -d --rm: the monitor removes it when it exits.
    setup.run(&["rm", &kept]).ok();
    setup.detach(&["--rm"], &["true"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !setup.container_dirs().is_empty() {
        assert!(Instant::now() < deadline, "run -d --rm left its container");
        std::thread::sleep(Duration::from_millis(50));
    }
    setup.assert_nothing_left();
}

#[test]
fn exec_joins_a_running_container() {
    if !support::require_root("exec_joins_a_running_container") {
        return;
    }
    let setup = Setup::new(BIN);
    let id = setup.detach(&["--hostname", "box", "--name", "box"], &["sleep", "1000"]);
    // The container's processes: its sleep as PID 1, and ps itself.
    let ps = setup
        .run(&["exec", "box", "ps", "-o", "pid,comm"])
        .ok()
        .to_string();
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{ps}");
    assert_eq!(rows[0], ["1", "sleep"], "{ps}");
    assert_eq!(rows[1][1], "ps", "{ps}");
    assert_eq!(setup.run(&["exec", &id[..12], "hostname"]).ok(), "box\n");
    // Its environment, -e, -w, -u, and the command's own exit code.
    let out = setup.run(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "box",
        "sh",
        "-c",
        "echo $X $HOSTNAME; pwd; id -u; grep CapEff /proc/self/status; exit 5",
    ]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(out.stdout, "1 box\n/tmp\n1000\nCapEff:\t0000000000000000\n");
    let caps = setup.run(&[
        "exec",
        "box",
        "grep",
        "-E",
        "^(CapEff|NoNewPrivs)",
        "/proc/self/status",
    ]);
    assert_eq!(caps.ok(), "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\n");
    setup.run(&["exec", "box", "nosuchcmd"]).fails_with(127);
    setup.run(&["rm", "-f", "box"]).ok();
    setup.run(&["exec", "box", "true"]).fails_with(1);
    setup.assert_nothing_left();
}

#[test]
fn stop_waits_for_a_term_trap_and_kills_what_ignores_it() {
    if !support::require_root("stop_waits_for_a_term_trap_and_kills_what_ignores_it") {
        return;
    }
    let setup = Setup::new(BIN);
    let polite = setup.detach(
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.05; done",
        ],
    );
    // PID 1 without a TERM handler: the kernel drops the signal.
    let stubborn = setup.detach(&[], &["sleep", "1000"]);
    let started = Instant::now();
    setup.run(&["stop", "-t", "1", &polite]).ok();
    assert!(started.elapsed() < Duration::from_millis(900));
    let started = Instant::now();
    setup.run(&["stop", "-t", "1", &stubborn]).ok();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(setup.state(&polite)["exit_code"], 0);
    assert_eq!(setup.state(&stubborn)["exit_code"], 137);
    setup.run(&["rm", &polite, &stubborn]).ok();
    setup.assert_nothing_left();
}

#[test]
fn twenty_detached_containers_at_once_then_rm_f_leaves_nothing() {
    if !support::require_root("twenty_detached_containers_at_once_then_rm_f_leaves_nothing") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.run(&["pull", "-q", &setup.image()]).ok();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let setup = &setup;
                s.spawn(move || setup.detach(&["--name", &format!("c{i}")], &["sleep", "1000"]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20);
    let again = setup.run(&["run", "-d", "--name", "c7", &setup.image(), "true"]);
    assert!(
        again.fails_with(125).contains("already in use"),
        "{}",
        again.stderr
    );
    let pids: Vec<i64> = ids
        .iter()
        .map(|id| setup.state(id)["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(setup.run(&["ps", "-q"]).ok().lines().count(), 20);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    assert_eq!(setup.run(&args).ok().lines().count(), 20);
    setup.assert_nothing_left();
    for pid in pids {
        assert!(!process_alive(pid), "container process {pid} still alive");
    }
}

#[test]
fn rm_f_cleans_up_after_a_killed_monitor() {
    if !support::require_root("rm_f_cleans_up_after_a_killed_monitor") {
        return;
    }
    let setup = Setup::new(BIN);
    let id = setup.detach(&[], &["sh", "-c", "sleep 1000 & sleep 1000"]);
    let state = setup.state(&id);
    let monitor = state["monitor_pid"].as_i64().expect("a monitor PID");
    let pid = state["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The container still runs: ps says so, and exec still works.
    std::thread::sleep(Duration::from_millis(100));
    assert!(setup.run(&["ps"]).ok().contains("Up "));
    // Its PID 1 killed behind the engine's back: not "Up" forever.
    let id2 = setup.detach(&[], &["sleep", "1000"]);
    let monitor2 = setup.state(&id2)["monitor_pid"].as_i64().unwrap();
    let pid2 = setup.state(&id2)["pid"].as_i64().unwrap();
    for p in [monitor2, pid2] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    setup.wait_for(&["ps", "-q"], |ps| ps == format!("{}\n", &id[..12]));
    assert!(setup.run(&["ps", "-a"]).ok().contains("Exited (255)"));
    // stop records the exit itself when no monitor is left to do it.
    setup.run(&["stop", "-t", "1", &id]).ok();
    assert_eq!(setup.state(&id)["status"], "exited");
    assert_eq!(setup.state(&id)["exit_code"], 137);
    assert_eq!(
        mounts_under(&setup.containers().join(&id)),
        Vec::<String>::new()
    );
    assert_eq!(setup.run(&["rm", "-f", &id, &id2]).ok().lines().count(), 2);
    setup.assert_nothing_left();
    assert!(!process_alive(pid));
    assert!(!process_alive(pid2));
}

#[test]
fn a_relative_root_works_from_any_directory() {
    if !support::require_root("a_relative_root_works_from_any_directory") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    let cwd = support::TempDir::new("relative-root");
    let out = Run::from_output(
        setup
            .engine
            .command(BIN, &["--root", "rel", "run", "--rm", &image, "echo", "ok"])
            .current_dir(cwd.path())
            .output()
            .unwrap(),
    );
    assert_eq!(out.ok(), "ok\n");
    assert!(cwd.join("rel/images/index.json").exists());
    assert_eq!(mounts_under(cwd.path()), Vec::<String>::new());
}

#[test]
fn an_image_cannot_make_the_engine_write_on_the_host() {
    if !support::require_root("an_image_cannot_make_the_engine_write_on_the_host") {
        return;
    }
    let setup = Setup::new(BIN);
    // The image's /etc/hostname and /etc/hosts are absolute symlinks to a
    // path of the host that does not exist yet. Mounting the container's
    // own files there must stay inside the container's tree.
    let host = TempDir::new("escape-target");
    let victim = host.join("pwned");
    let busybox = fs::read("/bin/busybox").expect("Debian's busybox-static");
    let layer = support::layers::LayerTar::new()
        .dir("bin", 0o755)
        .file_with_mode("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .symlink("bin/cat", "busybox")
        .dir("etc", 0o755)
        .symlink("etc/hostname", victim.to_str().unwrap())
        .symlink("etc/hosts", &format!("{}/hosts", host.path().display()))
        .into_bytes();
    let archive = host.join("hostile.tar");
    fs::write(
        &archive,
        support::layers::docker_archive("hostile:latest", &[layer]),
    )
    .unwrap();
    setup.run(&["load", "-i", archive.to_str().unwrap()]).ok();
    let out = setup.run(&[
        "run",
        "--rm",
        "--hostname",
        "inside",
        "hostile",
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(out.ok(), "inside\n");
    assert!(
        !victim.exists(),
        "the engine wrote on the host through the image's symlink"
    );
    assert!(!host.join("hosts").exists());
    setup.assert_nothing_left();
}

#[test]
fn start_runs_a_stopped_container_again_on_its_own_writable_layer() {
    if !support::require_root("start_runs_a_stopped_container_again_on_its_own_writable_layer") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    // Each run prints what earlier runs left in the writable layer.
    let script = "cat /runs 2>/dev/null; echo run >> /runs; exit 3";
    let first = setup.run(&["run", "--name", "keep", &image, "sh", "-c", script]);
    assert_eq!((first.code, first.stdout.as_str()), (3, ""));
    // -a: in the foreground, its output and exit code ours.
    let again = setup.run(&["start", "-a", "keep"]);
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (3, "run\n"),
        "{}",
        again.stderr
    );
    // Without -a: under a monitor, like run -d; the name is printed.
    assert_eq!(setup.run(&["start", "keep"]).ok(), "keep\n");
    setup.wait_for(&["ps", "-a"], |ps| ps.contains("Exited (3)"));
    assert_eq!(setup.run(&["logs", "keep"]).ok(), "run\nrun\n");
    // The writable layer has all three runs.
    let dir = &setup.container_dirs()[0];
    assert_eq!(
        fs::read_to_string(dir.join("upper/runs")).unwrap(),
        "run\nrun\nrun\n"
    );
    assert_eq!(mounts_under(setup.engine.root.path()), Vec::<String>::new());
    // A running container is not started twice.
    let id = setup.detach(&["--name", "svc"], &["sleep", "1000"]);
    assert_eq!(setup.run(&["start", "svc"]).ok(), "svc\n");
    let twice = setup.run(&["start", "-a", "svc"]);
    assert!(
        twice.fails_with(1).contains("already running"),
        "{}",
        twice.stderr
    );
    assert_eq!(setup.state(&id)["status"], "running");
    let missing = setup.run(&["start", "nosuch"]);
    assert!(missing.fails_with(1).contains("No such container: nosuch"));
    setup.run(&["rm", "-f", "keep", "svc"]).ok();
    setup.assert_nothing_left();
}

#[test]
fn prune_removes_a_container_directory_left_half_created() {
    if !support::require_root("prune_removes_a_container_directory_left_half_created") {
        return;
    }
    let setup = Setup::new(BIN);
    // What a crash between `mkdir` and the config's rename leaves: a
    // container directory with no readable config.json (here made by
    // hand), which no command can name.
    let id = "ab".repeat(32);
    let dir = setup.containers().join(&id);
    fs::create_dir_all(dir.join("upper/etc")).unwrap();
    fs::write(dir.join("upper/etc/file"), "left behind").unwrap();
    fs::write(dir.join("config.json"), "").unwrap();
    assert_eq!(setup.run(&["ps", "-a", "-q"]).ok(), "");
    let out = setup.run(&["prune"]);
    assert!(out.ok().contains(&id), "{}", out.stdout);
    setup.assert_nothing_left();
}

#[test]
fn create_makes_a_container_that_only_start_runs() {
    if !support::require_root("create_makes_a_container_that_only_start_runs") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    // run = create + start: a created container exists but does not run.
    let id = setup.run(&[
        "create",
        "--name",
        "made",
        &image,
        "sh",
        "-c",
        "echo ran; exit 4",
    ]);
    let id = id.ok().trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = setup.run(&["ps", "-a"]).ok().to_string();
    assert!(
        ps.lines()
            .nth(1)
            .is_some_and(|l| l.contains("Created") && l.ends_with("made")),
        "{ps}"
    );
    assert_eq!(setup.run(&["ps", "-q"]).ok(), "", "not running");
    assert_eq!(mounts_under(setup.engine.root.path()), Vec::<String>::new());
    let started = setup.run(&["start", "-a", "made"]);
    assert_eq!((started.code, started.stdout.as_str()), (4, "ran\n"));
    // create --rm: removed after its one run.
    setup
        .run(&["create", "--rm", "--name", "once", &image, "true"])
        .ok();
    setup.run(&["start", "-a", "once"]).ok();
    assert!(setup
        .run(&["start", "-a", "once"])
        .fails_with(1)
        .contains("No such container"));
    // -d means nothing to create.
    assert!(setup
        .run(&["create", "-d", &image, "true"])
        .fails_with(125)
        .contains("-d"));
    setup.run(&["rm", "made"]).ok();
    setup.assert_nothing_left();
}
