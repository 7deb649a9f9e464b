//! Where a container is in its life: its [`Status`], the [`State`] kept
//! in `state.json`, and the transitions from one to the next, all here:
//!
//! ```text
//!            State::created     State::running        State::exited
//!   create ──────────────▶ Created ─────────▶ Running ───────────▶ Exited
//!                             │                  │                   │
//!                             │ State::failed_to_start               │ start again
//!                             ▼                  │ (PID 1 gone,      ▼
//!                           Exited ◀─────────────┘  nobody told:  Running
//!                                                   State::crashed)
//!   a file of it missing, or no state at all: Dead (see `effective_state`)
//! ```
//!
//! A PID alone does not name a process for long (PIDs are reused), so
//! `state.json` keeps each PID with its start time, and [`alive`] checks
//! both: a container whose monitor was SIGKILLed is never "Up" forever.

use crate::record::{self, now};
use serde::{Deserialize, Serialize};
use std::path::Path;

// ANCHOR: status
/// Where a container is in its life. Written in `state.json` (and shown
/// by `inspect` as `State.Status`) as docker's lowercase words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, not started (yet): `create`, or `run` before its start.
    Created,
    /// Its PID 1 runs.
    Running,
    /// Its PID 1 exited (or never started: docker's 125, 126, 127).
    Exited,
    /// Unusable: its creation was interrupted, or a file of it deleted.
    /// `start` refuses it, `rm` and `prune` remove it. Also what a
    /// container with no readable `state.json` is.
    #[default]
    Dead,
}

impl Status {
    /// The word in `state.json` and `inspect`: `created`, `running`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
// ANCHOR_END: status

/// `state.json`: where the container is in its life.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub status: Status,
    /// The host PID of the container's PID 1 while it runs.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// When `pid` started, in clock ticks after boot (`/proc/PID/stat`
    /// field 22): a PID can be reused, a PID *and* its start time cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The process that waits for PID 1 and records its exit, and its
    /// start time: the monitor of `run -d`, or the foreground `run` (or
    /// `start -a`) itself. Once it is gone, nobody else will record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_start: Option<u64>,
    /// The kernel's OOM killer killed a process of the container (over
    /// `--memory`): docker's State.OOMKilled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

// ANCHOR: transitions
impl State {
    /// `create` is done: nothing runs yet.
    pub fn created() -> State {
        State {
            status: Status::Created,
            ..State::default()
        }
    }

    /// `start` is done: PID 1 is `pid`, and `waiter` (a foreground `run`
    /// or a monitor) waits for it; each kept with its start time.
    pub fn running(pid: i32, waiter: i32) -> State {
        State {
            status: Status::Running,
            pid: Some(pid),
            pid_start: start_time(pid),
            started: Some(now()),
            monitor_pid: Some(waiter),
            monitor_start: start_time(waiter),
            ..State::default()
        }
    }

    /// The monitor of `run -d` (or `start`), process `waiter`, now waits
    /// for PID 1 instead of the command that started it.
    pub fn waited_by(&mut self, waiter: i32) {
        self.monitor_pid = Some(waiter);
        self.monitor_start = start_time(waiter);
    }

    /// `start` failed: PID 1 never ran its command; `code` is docker's
    /// (125: the engine failed, 126: cannot invoke, 127: not found).
    pub fn failed_to_start(code: i32) -> State {
        State {
            status: Status::Exited,
            exit_code: Some(code),
            finished: Some(now()),
            ..State::default()
        }
    }

    /// PID 1 exited with `code`, recorded by whoever waited for it (or by
    /// `stop`, when nobody was left to).
    pub fn exited(&mut self, code: i32, oom_killed: bool) {
        self.status = Status::Exited;
        self.exit_code = Some(code);
        self.finished = Some(now());
        self.pid = None;
        self.pid_start = None;
        self.oom_killed = oom_killed;
    }

    /// Recorded "running", but PID 1 is gone and nobody recorded its exit
    /// (its monitor was SIGKILLed, the machine rebooted): exited, with
    /// code 255 as docker does after a crash. Seen, not written.
    pub fn crashed(&mut self) {
        self.status = Status::Exited;
        self.exit_code = Some(255);
        self.pid = None;
    }

    /// Does its PID 1 run (as recorded)?
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }
}
// ANCHOR_END: transitions

/// When process `pid` started (ticks after boot), or `None` when there is
/// no such process or it is a zombie (dead, waiting to be reaped).
pub fn start_time(pid: i32) -> Option<u64> {
    let fields = crate::procfs::stat_fields(&pid.to_string())?;
    // Field 3 is the state; field 22 the start time.
    if matches!(fields.first().map(String::as_str), Some("Z" | "X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Is `pid` alive and still the process that started at `start`?
pub fn alive(pid: Option<i32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(pid), Some(start)) => start_time(pid) == Some(start),
        (Some(pid), None) => start_time(pid).is_some(),
        _ => false,
    }
}

// ANCHOR: effective
/// The state as it really is: a "running" container whose PID 1 is gone
/// without anyone recording it is [`State::crashed`].
///
/// A container without its state or one of the files `create` makes
/// (its creator was killed halfway, or a file was deleted by hand) is
/// [`Status::Dead`], as docker calls a container it cannot use. One
/// being created right now is [`Status::Created`].
pub fn effective_state(dir: &Path) -> State {
    let mut state = match record::read_state(dir) {
        Ok(state) => state,
        Err(_) if record::being_created(dir) => return State::created(),
        // Its creation may have ended meanwhile; else it never will.
        Err(_) => record::read_state(dir).unwrap_or_default(),
    };
    if state.status == Status::Dead || (!state.is_running() && record::missing_file(dir).is_some())
    {
        state.status = Status::Dead;
        return state;
    }
    if state.is_running() && !alive(state.pid, state.pid_start) {
        // The monitor may be writing the real exit code right now.
        if alive(state.monitor_pid, state.monitor_start) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            state = record::read_state(dir).unwrap_or_default();
            if !state.is_running() {
                return state;
            }
        }
        state.crashed();
    }
    state
}
// ANCHOR_END: effective

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_and_write_as_the_words_of_earlier_state_files() {
        for (status, word) in [
            (Status::Created, "created"),
            (Status::Running, "running"),
            (Status::Exited, "exited"),
            (Status::Dead, "dead"),
        ] {
            let json = format!("{{\"status\":\"{word}\",\"pid\":null,\"exit_code\":null,\"started\":null,\"finished\":null}}");
            let state: State = serde_json::from_str(&json).unwrap();
            assert_eq!(state.status, status);
            assert_eq!(serde_json::to_string(&state).unwrap(), json);
            assert_eq!(status.to_string(), word);
        }
    }

    #[test]
    fn transitions() {
        let mut state = State::running(std::process::id() as i32, 1);
        assert!(state.is_running());
        state.exited(3, true);
        assert_eq!(
            (state.status, state.exit_code, state.pid, state.oom_killed),
            (Status::Exited, Some(3), None, true)
        );
        assert_eq!(State::failed_to_start(127).exit_code, Some(127));
        assert_eq!(State::created().status, Status::Created);
    }
}
