//! Chapter 03's reliability, docker's behaviour as the
//! reference: what the engine does when it is killed halfway, when the
//! disk is full, when an image vanishes under a `run`, when it is given a
//! bad host name or a file as its root, and how long stopping many
//! containers takes. Every test cleans up its containers, mounts, cgroups
//! and processes, also when it fails. All of it needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::containers::{cgroup_dirs, container_dirs, kill_and_unmount_everything, Setup};
use support::TempDir;

const BIN: &str = "ch03-run";

/// The STATUS column of `ps -a` for the container named `name`, or None.
fn status_of(setup: &Setup, name: &str) -> Option<String> {
    let out = setup.run(&["ps", "-a", "--no-trunc"]);
    assert_eq!(out.code, 0, "ps -a failed: {}", out.stderr);
    let mut lines = out.stdout.lines();
    let header = lines.next()?;
    let status_at = header.find("STATUS")?;
    let ports_at = header.find("PORTS")?;
    lines
        .find(|line| line.split_whitespace().last() == Some(name))
        .map(|line| line[status_at..ports_at].trim().to_string())
}

/// Host PIDs of live (non-zombie) processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().to_string())
                })
                .is_some_and(|rest| !rest.starts_with('Z'))
        })
        .collect()
}

/// The PIDs in any of the container's cgroups.
fn cgroup_procs(id: &str) -> Vec<String> {
    cgroup_dirs(id)
        .iter()
        .flat_map(|dir| {
            fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The ID of the container named `name` under the engine root, from its config.
fn id_of(root: &Path, name: &str) -> Option<String> {
    container_dirs(root).into_iter().find_map(|dir| {
        let config: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("config.json")).ok()?).ok()?;
        (config["name"] == name).then(|| config["id"].as_str().unwrap().to_string())
    })
}

/// Kills `pid` (a process this test started) with SIGKILL.
fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn host_names_are_checked_as_docker_does() {
    if !support::require_root("host_names_are_checked_as_docker_does") {
        return;
    }
    let setup = Setup::new(BIN);
    // Not pulled: a refused host name must not even pull the image.
    let image = setup.image();
    let long_label = "a".repeat(64);
    let too_long = ["abc"; 17].join("."); // 67: over the kernel's 64
    for bad in [
        "web\n10.0.0.1 evil",
        "a b",
        "under_score",
        "-dash",
        "dash-",
        "a..b",
        long_label.as_str(),
        too_long.as_str(),
    ] {
        let flag = format!("--hostname={bad}");
        let out = setup.run(&["run", "--rm", &flag, &image, "true"]);
        let line = out.fails_with(125);
        assert!(line.contains("invalid hostname"), "{bad:?}: {line}");
        let out = setup.run(&["create", &format!("-h{bad}"), &image, "true"]);
        assert!(out.fails_with(125).contains("invalid hostname"));
    }
    assert_eq!(setup.container_dirs(), Vec::<PathBuf>::new());
    assert_eq!(
        setup.run(&["images", "-q"]).ok(),
        "",
        "the image was pulled"
    );
    // What docker accepts still works: 63-character labels, dots, digits,
    // up to the kernel's 64 characters.
    let fine = format!("{}.1", "b".repeat(62));
    assert_eq!(fine.len(), 64);
    assert_eq!(
        setup
            .run(&["run", "--rm", "-h", "web-1.example", &image, "hostname"])
            .ok(),
        "web-1.example\n"
    );
    let out = setup.run(&["run", "--rm", "-h", &fine, &image, "hostname"]);
    assert_eq!(out.ok(), format!("{fine}\n"));
    setup.assert_nothing_left();
}

#[test]
fn a_file_as_the_engine_root_fails_every_command_clearly() {
    if !support::require_root("a_file_as_the_engine_root_fails_every_command_clearly") {
        return;
    }
    let setup = Setup::new(BIN);
    let dir = TempDir::new("root-file");
    let file = dir.join("not-a-dir");
    fs::write(&file, "").unwrap();
    let file = file.to_string_lossy().to_string();
    let image = setup.image();
    let commands: [&[&str]; 8] = [
        &["ps", "-a"],
        &["prune"],
        &["images"],
        &["rm", "x"],
        &["stop", "x"],
        &["run", "--rm", &image, "true"],
        &["pull", &image],
        &["layers", &image],
    ];
    for command in commands {
        let mut args = vec!["--root", file.as_str()];
        args.extend_from_slice(command);
        let line = setup.run(&args).fails_with(125).to_string();
        assert_eq!(
            line,
            format!("--root {file}: not a directory — give a directory for the engine's state"),
            "{command:?}"
        );
        // The same through CRABBOX_ROOT.
        let out = support::Run::from_output(
            setup
                .engine
                .command(BIN, command)
                .env("CRABBOX_ROOT", &file)
                .output()
                .unwrap(),
        );
        assert!(
            out.fails_with(125).contains("not a directory"),
            "{command:?}"
        );
    }
    assert_eq!(fs::read(&file).unwrap(), b"", "the file was changed");
}

#[test]
fn a_killed_foreground_run_never_leaves_its_process_running() {
    if !support::require_root("a_killed_foreground_run_never_leaves_its_process_running") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let root = setup.engine.root.path().to_path_buf();
    let started = Instant::now();
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..40u32 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        // A command line no other process has: `sleep N` with our own N.
        let seconds = (900_000 + (std::process::id() % 1000) * 64 + i).to_string();
        let name = format!("fg{i}");
        let mut run = setup.engine.command(
            BIN,
            &[
                "run", "-m", "16m", "--name", &name, &image, "sleep", &seconds,
            ],
        );
        run.stdout(Stdio::null()).stderr(Stdio::null());
        let mut run = run.spawn().unwrap();
        // From "not created yet" to "long running": 0 to ~390 ms.
        std::thread::sleep(Duration::from_millis(u64::from(i * 97 % 400)));
        sigkill(run.id());
        run.wait().unwrap();
        let id = id_of(&root, &name);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let sleeping = processes_running(&["sleep", &seconds]);
            let in_cgroup = id.as_deref().map(cgroup_procs).unwrap_or_default();
            if sleeping.is_empty() && in_cgroup.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "try {i}: the container outlived its killed run: sleep {sleeping:?}, cgroup {in_cgroup:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(status) = status_of(&setup, &name) {
            assert!(
                status == "Created" || status == "Dead" || status.starts_with("Exited ("),
                "try {i}: ps -a shows {status:?} for a container whose run was killed"
            );
            *seen
                .entry(status.split(' ').next().unwrap().to_string())
                .or_default() += 1;
            setup.run(&["rm", "-f", &name]).ok();
        }
        if let Some(id) = id {
            for dir in cgroup_dirs(&id) {
                assert!(!dir.exists(), "try {i}: cgroup {} left", dir.display());
            }
        }
    }
    eprintln!("statuses after a killed run: {seen:?}");
    // Killed before its config was written: only prune sees such a directory.
    setup.run(&["prune"]).ok();
    setup.assert_nothing_left();
}

#[test]
fn a_damaged_container_is_shown_dead_and_start_rm_prune_handle_it() {
    if !support::require_root("a_damaged_container_is_shown_dead_and_start_rm_prune_handle_it") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let containers = setup.containers();
    // As a killed `run -d` leaves it: a config, no /etc files, no state.
    for name in ["broken1", "broken2", "broken3"] {
        let id = setup
            .run(&["create", "--name", name, &image, "true"])
            .ok()
            .trim()
            .to_string();
        for file in ["hostname", "state.json"] {
            fs::remove_file(containers.join(&id).join(file)).unwrap();
        }
        assert_eq!(status_of(&setup, name).as_deref(), Some("Dead"));
    }
    // Files deleted by hand from a created container: its state says
    // "created", but it cannot start.
    let id = setup
        .run(&["create", "--name", "nohosts", &image, "true"])
        .ok()
        .trim()
        .to_string();
    fs::remove_file(containers.join(&id).join("hosts")).unwrap();
    assert_eq!(status_of(&setup, "nohosts").as_deref(), Some("Dead"));
    for name in ["broken1", "nohosts"] {
        let line = setup.run(&["start", name]).fails_with(1).to_string();
        assert!(line.contains("damaged") && line.contains(" rm "), "{line}");
        let line = setup
            .run(&["start", "-a", name])
            .fails_with(125)
            .to_string();
        assert!(line.contains("damaged") && line.contains(" rm "), "{line}");
    }
    assert_eq!(setup.run(&["rm", "broken1"]).ok(), "broken1\n");
    assert_eq!(setup.run(&["rm", "-f", "broken2"]).ok(), "broken2\n");
    let pruned = setup.run(&["prune"]).ok().to_string();
    assert!(pruned.contains(&id), "{pruned}");
    setup.assert_nothing_left();
}

#[test]
fn a_killed_run_d_caller_leaves_a_container_that_start_rm_and_prune_handle() {
    if !support::require_root(
        "a_killed_run_d_caller_leaves_a_container_that_start_rm_and_prune_handle",
    ) {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.pulled_image();
    let started = Instant::now();
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..30u32 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let name = format!("bg{i}");
        let mut run = setup.engine.command(
            BIN,
            &["run", "-d", "--name", &name, &image, "sleep", "1000"],
        );
        run.stdout(Stdio::null()).stderr(Stdio::null());
        let mut run = run.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(u64::from(i * 13 % 120)));
        sigkill(run.id());
        run.wait().unwrap();
        // A monitor already started goes on: let it finish starting.
        std::thread::sleep(Duration::from_millis(300));
        let Some(status) = status_of(&setup, &name) else {
            *seen.entry("none".into()).or_default() += 1;
            continue;
        };
        let kind = status.split(' ').next().unwrap().to_string();
        assert!(
            ["Created", "Dead", "Up", "Exited"].contains(&kind.as_str()),
            "try {i}: ps -a shows {status:?}"
        );
        *seen.entry(kind.clone()).or_default() += 1;
        match kind.as_str() {
            "Dead" => {
                let line = setup.run(&["start", &name]).fails_with(1).to_string();
                assert!(line.contains("damaged"), "try {i}: {line}");
                if i % 2 == 0 {
                    setup.run(&["rm", &name]).ok();
                } else {
                    setup.run(&["prune"]).ok();
                }
            }
            "Created" => {
                assert_eq!(setup.run(&["start", &name]).ok(), format!("{name}\n"));
                assert!(status_of(&setup, &name).unwrap().starts_with("Up"));
                setup.run(&["rm", "-f", &name]).ok();
            }
            _ => {
                setup.run(&["rm", "-f", &name]).ok();
            }
        }
        assert_eq!(
            status_of(&setup, &name),
            None,
            "try {i}: {name} still listed"
        );
    }
    eprintln!("statuses after a killed run -d: {seen:?}");
    setup.run(&["prune"]).ok();
    setup.assert_nothing_left();
}

/// A small tmpfs as an engine root, unmounted (with everything under it)
/// when dropped, also when the test fails.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = TempDir::new("small-disk");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .expect("mount a tmpfs");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Container processes killed, overlays then the tmpfs detached.
        kill_and_unmount_everything(self.dir.path());
        std::thread::sleep(Duration::from_millis(50));
        for dir in container_dirs(self.dir.path()) {
            let id = dir.file_name().unwrap().to_string_lossy().to_string();
            for cgroup in cgroup_dirs(&id) {
                let _ = fs::remove_dir(cgroup);
            }
        }
    }
}

#[test]
fn a_full_disk_leaves_nothing_half_made_and_says_what_was_lost() {
    if !support::require_root("a_full_disk_leaves_nothing_half_made_and_says_what_was_lost") {
        return;
    }
    let setup = Setup::new(BIN);
    let disk = SmallDisk::new("24m");
    let root = disk.path().to_string_lossy().to_string();
    let image = setup.image();
    let on_disk = |args: &[&str]| {
        let mut all = vec!["--root", root.as_str()];
        all.extend_from_slice(args);
        setup.run(&all)
    };
    on_disk(&["pull", "-q", &image]).ok();
    // The container fills the disk (its writable layer is on it), then
    // exits 7: the engine cannot record that, and says so.
    let out = on_disk(&[
        "run",
        "--name",
        "filler",
        &image,
        "sh",
        "-c",
        "cat /dev/zero > /fill 2>/dev/null; exit 7",
    ]);
    let line = out.fails_with(125).to_string();
    assert!(line.contains("exited with code 7"), "{line}");
    assert!(line.contains("No space left on device"), "{line}");
    assert!(!line.contains("\n"), "{line}");
    // Three runs on the full disk: one clear line each, nothing made.
    for _ in 0..3 {
        let line = on_disk(&["run", "--rm", &image, "true"])
            .fails_with(125)
            .to_string();
        assert!(line.contains("No space left on device"), "{line}");
        assert!(line.contains("free some space"), "{line}");
        let line = on_disk(&["run", &image, "true"])
            .fails_with(125)
            .to_string();
        assert!(line.contains("No space left on device"), "{line}");
    }
    let dirs = container_dirs(disk.path());
    assert_eq!(dirs.len(), 1, "half-made containers left: {dirs:?}");
    let status = on_disk(&["ps", "-a"]).ok().to_string();
    assert!(!status.contains(" Up "), "{status}");
    // Removing the filler frees the disk; then a run works again.
    assert_eq!(on_disk(&["rm", "filler"]).ok(), "filler\n");
    assert_eq!(on_disk(&["run", "--rm", &image, "echo", "ok"]).ok(), "ok\n");
    assert_eq!(container_dirs(disk.path()), Vec::<PathBuf>::new());
    let mounts = support::containers::mounts_under(disk.path());
    assert_eq!(mounts, vec![root.clone()], "mounts left under the disk");
}

#[test]
fn stop_kill_and_rm_f_of_many_containers_run_in_parallel() {
    if !support::require_root("stop_kill_and_rm_f_of_many_containers_run_in_parallel") {
        return;
    }
    let setup = Setup::new(BIN);
    setup.pulled_image();
    let names: Vec<String> = (0..10).map(|i| format!("stubborn{i}")).collect();
    for name in &names {
        setup.detach(&["--name", name], &["sh", "-c", "trap '' TERM; sleep 1000"]);
    }
    let mut args = vec!["stop", "-t", "2"];
    args.extend(names.iter().map(String::as_str));
    let started = Instant::now();
    let out = setup.run_bounded(&args, Duration::from_secs(60));
    let took = started.elapsed();
    eprintln!("stop -t 2 of 10 containers ignoring SIGTERM took {took:?}");
    assert_eq!(
        out.ok(),
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
    assert!(
        took >= Duration::from_secs(2),
        "{took:?}: the grace period was skipped"
    );
    assert!(
        took < Duration::from_secs(5),
        "{took:?}: stopped one after another"
    );
    for name in &names {
        let id = id_of(setup.engine.root.path(), name).unwrap();
        assert_eq!(setup.state(&id)["exit_code"], 137, "{name}");
    }
    // docker's output: names in the order typed, one error line for each
    // failure, exit 1 if any failed.
    let out = setup.run(&["rm", &names[0], "nosuch", &names[1]]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{}\n{}\n", names[0], names[1]));
    assert_eq!(out.stderr, "rm: No such container: nosuch\n");
    // kill and rm -f of many, running.
    for name in &names[..2] {
        setup.detach(&["--name", name], &["sleep", "1000"]);
    }
    let out = setup.run(&["kill", &names[1], &names[0], "nosuch"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, format!("{}\n{}\n", names[1], names[0]));
    for name in &names[..2] {
        // Once its monitor has recorded the kill.
        let id = id_of(setup.engine.root.path(), name).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while setup.state(&id)["status"] != "exited" {
            assert!(Instant::now() < deadline, "{name} never recorded as exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        setup.run(&["start", name]).ok();
    }
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    let started = Instant::now();
    let out = setup.run(&args);
    assert_eq!(
        out.ok(),
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    setup.assert_nothing_left();
}

#[test]
fn rmi_f_during_a_run_is_said_in_one_line() {
    if !support::require_root("rmi_f_during_a_run_is_said_in_one_line") {
        return;
    }
    let setup = Setup::new(BIN);
    let image = setup.image();
    let started = Instant::now();
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..25u32 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        setup.run(&["pull", "-q", &image]).ok();
        let mut run = setup.engine.command(BIN, &["run", "--rm", &image, "true"]);
        run.stdout(Stdio::piped()).stderr(Stdio::piped());
        let run = run.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(u64::from(i * 7 % 60)));
        let rmi = setup.run(&["rmi", "-f", &image]);
        let out = support::containers::wait_bounded(run, Duration::from_secs(30));
        assert!(
            rmi.code == 0 || rmi.stderr.contains("No such image"),
            "rmi: {}",
            rmi.stderr
        );
        let outcome = if out.code == 0 {
            "ran".to_string()
        } else {
            let line = out.fails_with(125).to_string();
            assert!(
                line.contains("was removed") && line.contains("while"),
                "try {i}: {line}"
            );
            "removed while starting".to_string()
        };
        *outcomes.entry(outcome).or_default() += 1;
        assert_eq!(setup.container_dirs(), Vec::<PathBuf>::new(), "try {i}");
    }
    eprintln!("rmi -f during run: {outcomes:?}");
    setup.assert_nothing_left();
}
