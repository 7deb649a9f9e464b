//! Clean-up helpers for the tests that start containers (chapter 3 on):
//! whatever a test leaves running or mounted under its engine root is
//! killed and detached, also when the test fails.

use std::fs;
use std::path::{Path, PathBuf};

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
