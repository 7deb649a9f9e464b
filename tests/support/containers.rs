//! What the tests that start containers (chapter 3 on) share: an engine
//! root with the fixture registry ([`Setup`]), the commands they repeat,
//! and the clean-up: whatever a test leaves running, mounted or in a
//! cgroup under its engine root is killed, detached and removed, also
//! when the test fails.

use crate::{fixtures, Engine, Registry, Run};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An engine root and the fixture registry, for one test, driving the
/// chapter binary `bin` (e.g. `ch03-run`).
pub struct Setup {
    pub registry: Registry,
    pub engine: Engine,
    bin: &'static str,
    /// The IDs of the containers seen under the engine root after a
    /// command or printed by `run -d`: their cgroups must go with them.
    seen: Mutex<BTreeSet<String>>,
}

impl Setup {
    pub fn new(bin: &'static str) -> Setup {
        Setup {
            registry: Registry::serve_fixtures(&fixtures().registry_storage()),
            engine: Engine::new(),
            bin,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// The IDs seen so far (a test that failed holding the lock does not
    /// keep its clean-up from running).
    fn seen(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the containers under the engine root now.
    fn note_containers(&self) {
        self.container_dirs();
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
        let run = self.engine.run(self.bin, args);
        self.note_containers();
        run
    }

    /// `BIN ARGS`, killed (and the test failed) if it takes longer than `limit`.
    pub fn run_bounded(&self, args: &[&str], limit: Duration) -> Run {
        let mut command = self.engine.command(self.bin, args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let run = wait_bounded(command.spawn().unwrap(), limit);
        self.note_containers();
        run
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
        self.seen().insert(id.clone());
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

    /// The container directories (the lock file aside), remembered: a
    /// test may remove one by hand, its cgroup is still cleaned up.
    pub fn container_dirs(&self) -> Vec<PathBuf> {
        let dirs = container_dirs(self.engine.root.path());
        let ids = dirs
            .iter()
            .filter_map(|d| Some(d.file_name()?.to_string_lossy().to_string()));
        self.seen().extend(ids);
        dirs
    }

    /// A container's `state.json` (null when it has none).
    pub fn state(&self, id: &str) -> serde_json::Value {
        let bytes = fs::read(self.containers().join(id).join("state.json")).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// Asserts that no container directory, no mount and no cgroup of a
    /// container this setup saw is left.
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
        let seen: Vec<String> = self.seen().iter().cloned().collect();
        for id in seen {
            assert_no_cgroup_left(&id);
        }
    }
}

/// For an engine root driven without a [`Setup`] (the book's
/// transcripts): kills and unmounts what its containers left, and removes
/// their cgroups (every container has one), as `Setup` does when dropped.
pub fn clean_up_engine_root(root: &Path) {
    kill_and_unmount_everything(root);
    std::thread::sleep(Duration::from_millis(50));
    for dir in container_dirs(root) {
        let id = dir.file_name().unwrap().to_string_lossy().to_string();
        for cgroup in cgroup_dirs(&id) {
            let _ = fs::remove_dir(cgroup);
        }
    }
}

/// Asserts that no directory of container `id`'s cgroup is left (every
/// controller of v1, the v2 tree, the hybrid host's `unified` tree).
#[track_caller]
pub fn assert_no_cgroup_left(id: &str) {
    let left: Vec<PathBuf> = cgroup_dirs(id).into_iter().filter(|d| d.exists()).collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "cgroup directories left");
}

impl Drop for Setup {
    fn drop(&mut self) {
        kill_and_unmount_everything(self.engine.root.path());
        // Give the killed processes a moment to leave their cgroups.
        std::thread::sleep(Duration::from_millis(50));
        self.note_containers();
        for id in self.seen().iter() {
            for cgroup in cgroup_dirs(id) {
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

/// Every directory a container's cgroup may have (v2; v1's controllers,
/// devices included; a hybrid host's `unified` v2 tree).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("crabbox").join(id)];
    for controller in ["memory", "pids", "cpu", "devices", "unified"] {
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
