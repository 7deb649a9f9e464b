//! What the tests that start containers (chapter 3 on) share: an engine
//! root with the fixture registry ([`Setup`]), the commands they repeat,
//! and the clean-up: whatever a test leaves running, mounted or in a
//! cgroup under its engine root is killed, detached and removed, also
//! when the test fails.

use crate::{fixtures, Engine, Registry, Run};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// An engine root and the fixture registry, for one test, driving the
/// chapter binary `bin` (e.g. `ch03-run`).
pub struct Setup {
    pub registry: Registry,
    pub engine: Engine,
    bin: &'static str,
}

impl Setup {
    pub fn new(bin: &'static str) -> Setup {
        Setup {
            registry: Registry::serve_fixtures(&fixtures().registry_storage()),
            engine: Engine::new(),
            bin,
        }
    }

    /// The fixture busybox, by its name in the registry.
    pub fn image(&self) -> String {
        format!("{}/busybox", self.registry.addr())
    }

    /// The fixture busybox, pulled into the engine first.
    pub fn pulled_image(&self) -> String {
        let image = self.image();
        self.run(&["pull", "-q", &image]).ok();
        image
    }

    /// `BIN ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.engine.run(self.bin, args)
    }

    /// `BIN ARGS`, killed (and the test failed) if it takes longer than `limit`.
    pub fn run_bounded(&self, args: &[&str], limit: Duration) -> Run {
        let mut command = self.engine.command(self.bin, args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        wait_bounded(command.spawn().unwrap(), limit)
    }

    /// `BIN run --rm IMAGE COMMAND…`.
    pub fn run_rm(&self, command: &[&str]) -> Run {
        let image = self.image();
        let mut args = vec!["run", "--rm", image.as_str()];
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// `sh -c SCRIPT` in a throwaway container; asserts it succeeds.
    pub fn sh(&self, script: &str) -> String {
        self.run_rm(&["sh", "-c", script]).ok().to_string()
    }

    /// `BIN run -d [FLAGS…] IMAGE COMMAND…`; returns the printed 64-hex ID.
    pub fn detach(&self, flags: &[&str], command: &[&str]) -> String {
        let image = self.image();
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.push(&image);
        args.extend_from_slice(command);
        let id = self.run(&args).ok().trim().to_string();
        assert_eq!(id.len(), 64, "not an ID: {id:?}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        id
    }

    /// Waits until `check` holds for the output of `BIN ARGS`.
    #[track_caller]
    pub fn wait_for(&self, args: &[&str], check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.run(args);
            if check(&out.stdout) {
                return out.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "{args:?} never satisfied the check: {}{}",
                out.stdout,
                out.stderr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ROOT/containers`.
    pub fn containers(&self) -> PathBuf {
        self.engine.root.join("containers")
    }

    /// The container directories (the lock file aside).
    pub fn container_dirs(&self) -> Vec<PathBuf> {
        container_dirs(self.engine.root.path())
    }

    /// A container's `state.json` (null when it has none).
    pub fn state(&self, id: &str) -> serde_json::Value {
        let bytes = fs::read(self.containers().join(id).join("state.json")).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// Asserts that no container directory and no mount is left.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        assert_eq!(
            self.container_dirs(),
            Vec::<PathBuf>::new(),
            "container directories left"
        );
        assert_eq!(
            mounts_under(self.engine.root.path()),
            Vec::<String>::new(),
            "mounts left"
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        kill_and_unmount_everything(self.engine.root.path());
        // Give the killed processes a moment to leave their cgroups.
        std::thread::sleep(Duration::from_millis(50));
        for dir in self.container_dirs() {
            let id = dir.file_name().unwrap().to_string_lossy().to_string();
            for cgroup in cgroup_dirs(&id) {
                let _ = fs::remove_dir(cgroup);
            }
        }
    }
}

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Run {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Run::from_output(child.wait_with_output().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = Run::from_output(child.wait_with_output().unwrap());
            panic!(
                "timed out after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every directory a container's cgroup may have (v2 and v1).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("crabbox").join(id)];
    for controller in ["memory", "pids", "cpu"] {
        dirs.push(root.join(controller).join("crabbox").join(id));
    }
    dirs
}

/// Mount points under `dir`, from this process's mountinfo (the host's).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(String::from))
        .filter(|mount_point| mount_point.starts_with(&prefix))
        .collect()
}

/// The container directories under an engine root.
pub fn container_dirs(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// Kills every container process recorded under `root` and detaches every
/// mount below it.
pub fn kill_and_unmount_everything(root: &Path) {
    for dir in container_dirs(root) {
        let state = fs::read(dir.join("state.json")).unwrap_or_default();
        let state: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
        if let Some(pid) = state["pid"].as_i64() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for mount_point in mounts_under(root).iter().rev() {
        let _ = nix::mount::umount2(mount_point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}
