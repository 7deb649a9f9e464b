//! `stop` and `kill`: signals to a container's PID 1.
//!
//! `stop` asks first (SIGTERM, or the image's STOPSIGNAL), waits the
//! grace period, then insists (SIGKILL, which PID 1 cannot ignore; when
//! PID 1 of a PID namespace dies, the kernel kills every other process in
//! it). `kill` sends one signal and does not wait.

use crate::find::{self, Found};
use crate::record;
use crate::state::{alive, effective_state, State};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::path::Path;

/// Waits up to `limit` for a process to be gone; true if it is.
pub(crate) fn wait_gone(pid: Option<i32>, start: Option<u64>, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while alive(pid, start) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Sends `signal` to the container's PID 1, narrated.
pub(crate) fn signal_pid1(found: &Found, state: &State, signal: Signal) -> Result<()> {
    let pid = state.pid.unwrap_or_default();
    explain::step(
        &format!("send {signal} to the container's PID 1 ({pid} on the host)",),
        Some(&format!(
            "kill -{} {pid}",
            signal.as_str().trim_start_matches("SIG")
        )),
    );
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(|e| {
        Error::new(format!("cannot kill container {}: {e}", found.config.id)).with_exit_code(1)
    })
}

/// After PID 1 is gone: lets a live monitor record the exit (and unmount)
/// before we go on.
pub(crate) fn wait_for_monitor(found: &Found) {
    let state = record::read_state(&found.dir).unwrap_or_default();
    if state.monitor_pid.is_some() {
        wait_gone(
            state.monitor_pid,
            state.monitor_start,
            std::time::Duration::from_secs(10),
        );
        return;
    }
    // A foreground `run` records the exit itself: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while record::read_state(&found.dir).is_ok_and(|s| s.is_running())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// ANCHOR: stop
/// `stop`: the stop signal (SIGTERM unless the image or `--stop-signal`
/// chose another), up to `time` seconds (default: the container's
/// `--stop-timeout`, else 10) for PID 1 to exit, then SIGKILL.
pub fn stop(root: &Path, name: &str, time: Option<u64>) -> Result<()> {
    let found = find::find(root, name)?;
    let state = effective_state(&found.dir);
    if !state.is_running() {
        return Ok(());
    }
    let signal = match &found.config.stop_signal {
        Some(name) => parse_signal(name)?,
        None => Signal::SIGTERM,
    };
    let time = time.or(found.config.stop_timeout).unwrap_or(10);
    signal_pid1(&found, &state, signal)?;
    let grace = std::time::Duration::from_secs(time);
    let mut code = 255;
    if !wait_gone(state.pid, state.pid_start, grace) {
        explain::step(&format!("still running after {time}s: kill it"), None);
        signal_pid1(&found, &state, Signal::SIGKILL)?;
        code = 137;
        wait_gone(
            state.pid,
            state.pid_start,
            std::time::Duration::from_secs(10),
        );
    }
    wait_for_monitor(&found);
    record_without_monitor(&found, code)
}
// ANCHOR_END: stop

/// When no monitor is left to record the exit (it was killed), the
/// engine does: "exited" (137 after SIGKILL; 255, unknown, otherwise),
/// and the root filesystem unmounted.
fn record_without_monitor(found: &Found, code: i32) -> Result<()> {
    let state = record::read_state(&found.dir).unwrap_or_default();
    if !state.is_running()
        || state.monitor_pid.is_none()
        || alive(state.monitor_pid, state.monitor_start)
    {
        return Ok(());
    }
    let merged = found.dir.join("merged");
    if ch02_layers::overlay::is_mounted(&merged) {
        ch02_layers::overlay::unmount(&merged)?;
    }
    // A running container's state has `oom_killed` false: kept so.
    record::update_state(&found.dir, |s| s.exited(code, false))?;
    Ok(())
}

/// `kill -s SIGNAL`.
pub fn kill(root: &Path, name: &str, signal: Signal) -> Result<()> {
    let found = find::find(root, name)?;
    let state = effective_state(&found.dir);
    if !state.is_running() {
        return Err(Error::new(format!(
            "cannot kill container: {name}: container {} is not running",
            found.config.id
        ))
        .with_exit_code(1));
    }
    signal_pid1(&found, &state, signal)
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(text: &str) -> Result<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::new(format!("invalid signal: {text}")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse()
        .map_err(|_| Error::new(format!("invalid signal: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE").is_err());
    }
}
