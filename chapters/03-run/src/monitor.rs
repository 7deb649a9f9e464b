//! `run -d`: a small monitor process keeps the container company after
//! `run` has returned, as `containerd-shim` (or podman's `conmon`) does.
//!
//! ```text
//!  run -d (caller)        fork ─▶ A: setsid, fork ─▶ B: the monitor   (A exits at once:
//!  waits for B's report ◀────────────────────────── "ok" once PID 1 runs   B is nobody's child
//!  prints the ID, exits 0                           │                       but init's)
//!                                                   ├─ container's stdout/stderr ─▶ pipes ─▶ <id>-json.log
//!                                                   │  (with -t: its terminal's master ─▶ the log)
//!                                                   ├─ waitpid(PID 1): the exit code
//!                                                   └─ "exited" into state.json (under the lock),
//!                                                      unmount, and everything removed with --rm
//! ```
//!
//! The double fork and `setsid` cut every tie to the caller: no terminal,
//! not a child of `run` (which has exited), stdio on /dev/null. The log is
//! docker's `json-file` format, one JSON object per line:
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-28T06:30:00.123456789Z"}`.

use crate::extension::{Extension, ExtensionHooks};
use crate::lifecycle::{self, Container};
use crate::logs::{log_path, Log};
use crate::process::{self, Spawned};
use crate::{record, remove};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

// ANCHOR: detach
/// Starts the created container under a monitor that outlives us.
/// Returns once its PID 1 runs (or with the reason it could not, and
/// docker's exit code). With `--rm` (the config's `auto_remove`) the
/// monitor removes the container when it exits (`run -d --rm`). The
/// monitor runs `extension`'s hooks, and its `on_remove` with `--rm`.
pub fn start_detached<E: Extension>(container: Container, extension: &E) -> Result<()> {
    process::require_single_thread("fork needs a single-threaded process")?;
    let (report_read, report_write) = process::pipe()?;
    explain::step(
        "start a monitor process in its own session (double fork + setsid): it holds the container's PID 1, keeps its logs and records its exit",
        Some("setsid --fork …   # stdio on /dev/null, logs to <id>-json.log"),
    );
    // SAFETY: single-threaded (checked above): the child may do anything.
    match unsafe { fork() }.map_err(|e| Error::new(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(report_read);
            let _ = nix::unistd::setsid();
            // SAFETY: still single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => monitor_main(container, report_write, extension),
                // SAFETY: the first child ends here, running none of the
                // caller's exit-time code (it is a fork of the caller).
                _ => unsafe { libc::_exit(0) },
            }
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            let _ = waitpid(child, None);
            let mut report = String::new();
            let _ = File::from(report_read).read_to_string(&mut report);
            match report.split_once('\n') {
                Some(("ok", _)) => Ok(()),
                Some((code, message)) => {
                    Err(Error::new(message.to_string()).with_exit_code(code.parse().unwrap_or(125)))
                }
                None => Err(Error::new(
                    "the monitor process died before the container started",
                )),
            }
        }
    }
}
// ANCHOR_END: detach

/// The monitor: never returns.
fn monitor_main<E: Extension>(container: Container, report: OwnedFd, extension: &E) -> ! {
    // SAFETY: ignoring a signal is always sound (the container's PID 1
    // gets every disposition reset before exec).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut report = Some(File::from(report));
    if let Err(e) = monitor(&container, &mut report, extension) {
        // Before "ok" the caller reads this; after, nobody does.
        if let Some(mut report) = report.take() {
            let _ = write!(report, "{}\n{}", e.exit_code(), e.message());
        }
    }
    if container.config.auto_remove {
        let _ = remove::delete(container, extension);
    }
    // SAFETY: ends this process without running the caller's atexit code.
    unsafe { libc::_exit(0) }
}

fn dup2(from: &impl AsRawFd, to: i32) -> Result<()> {
    nix::unistd::dup2(from.as_raw_fd(), to)
        .map(|_| ())
        .map_err(|e| Error::new(format!("dup2: {e}")))
}

// ANCHOR: monitor
fn monitor<E: Extension>(
    container: &Container,
    report: &mut Option<File>,
    extension: &E,
) -> Result<i32> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::new(format!("/dev/null: {e}")))?;
    dup2(&null, 0)?;
    // The caller's stderr, kept only to pass on the --explain narration.
    let caller_stderr = File::from(
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::new(format!("dup: {e}")))?,
    );
    // The container's stdout and stderr are pipes read here.
    let (out_read, out_write) = process::pipe()?;
    let (err_read, err_write) = process::pipe()?;
    dup2(&out_write, 1)?;
    dup2(&err_write, 2)?;
    drop(out_write);
    drop(err_write);
    let mut hooks = ExtensionHooks {
        extension,
        container,
    };
    let started = lifecycle::start(container, &mut hooks);
    // From here on only the container writes to the pipes.
    dup2(&null, 1)?;
    dup2(&null, 2)?;
    let mut log = match Log::open(&log_path(&container.dir, &container.config.id)) {
        Ok(log) => log,
        Err(e) => {
            if let Ok(spawned) = started {
                abandon(container, spawned.pid);
            }
            return Err(e);
        }
    };
    // Everything narrated before exec is at the head of the stderr pipe:
    // it goes to the caller, the rest to the log.
    pass_on_narration(&err_read, caller_stderr, &mut log);
    let Spawned { pid, terminal } = started?;
    // Like any daemon, keep no directory of the caller's busy (it could
    // not be unmounted while we live), unless our paths are relative to it.
    if container.dir.is_absolute() {
        let _ = nix::unistd::chdir("/");
    }
    let recorded = record::update_state(&container.dir, |state| {
        state.waited_by(std::process::id() as i32);
    });
    if let Err(e) = recorded {
        abandon(container, pid);
        return Err(e);
    }
    // "ok", and the caller (reading until end of file) is free to go.
    if let Some(mut report) = report.take() {
        let _ = writeln!(report, "ok");
    }
    let mut outputs = vec![(out_read, "stdout"), (err_read, "stderr")];
    // -t: the container writes to its terminal; the monitor holds the
    // master and logs what comes out as "stdout", as docker does.
    if let Some(master) = terminal {
        outputs.push((master.fd, "stdout"));
    }
    let code = pump(pid, outputs, &mut log)?;
    lifecycle::finish(container, code, &mut hooks)
}
// ANCHOR_END: monitor

/// The container runs but the monitor cannot keep it (a full disk): it
/// must not run on with nobody to record its exit, so it is killed, reaped
/// and unmounted, and the caller told why.
fn abandon(container: &Container, pid: Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(pid, None);
    let _ = container.rootfs.unmount();
}

/// Copies the container's output into the log until every output closes
/// and PID 1 is reaped. Returns docker's exit code (128+N for signal N).
fn pump(pid: Pid, outputs: Vec<(OwnedFd, &str)>, log: &mut Log) -> Result<i32> {
    let mut open = vec![true; outputs.len()];
    let mut buf = vec![0u8; 64 * 1024];
    let mut status = None;
    while open.iter().any(|o| *o) {
        let mut fds: Vec<PollFd> = outputs
            .iter()
            .zip(&open)
            .filter(|(_, o)| **o)
            .map(|((fd, _), _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let ready = poll(&mut fds, PollTimeout::from(500u16)).unwrap_or(0);
        let mut revents = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect::<Vec<_>>()
            .into_iter();
        drop(fds);
        for (i, (fd, stream)) in outputs.iter().enumerate() {
            if !open[i] || !revents.next().unwrap_or(false) {
                continue;
            }
            // A pipe says 0 at its end; a terminal's master EIO once
            // every slave is closed.
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => log.write(stream, &buf[..n]),
            }
        }
        if ready == 0 && status.is_none() {
            // Quiet outputs: has PID 1 exited while something still holds them?
            if let Some(code) = exit_code(waitpid(pid, Some(WaitPidFlag::WNOHANG))) {
                status = Some(code);
                break;
            }
        }
    }
    match status {
        Some(code) => Ok(code),
        None => loop {
            if let Some(code) = exit_code(waitpid(pid, None)) {
                break Ok(code);
            }
        },
    }
}

/// Docker's exit code once PID 1 has ended (see `process::exit_code`);
/// 255 if it cannot be waited for any more.
fn exit_code(status: nix::Result<WaitStatus>) -> Option<i32> {
    status.map_or(Some(255), process::exit_code)
}

/// Moves the `[explain]` lines at the head of the container's stderr pipe
/// to the caller's stderr (non-blocking: only what is there already).
fn pass_on_narration(err_read: &OwnedFd, mut caller: File, log: &mut Log) {
    if !explain::enabled() {
        return;
    }
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [PollFd::new(err_read.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 0 {
            break;
        }
        match nix::unistd::read(err_read.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
    let mut narrated = 0;
    for line in pending.split_inclusive(|b| *b == b'\n') {
        if !line.starts_with(b"[explain]") || !line.ends_with(b"\n") {
            break;
        }
        narrated += line.len();
    }
    let _ = caller.write_all(&pending[..narrated]);
    if narrated < pending.len() {
        log.write("stderr", &pending[narrated..]);
    }
}
