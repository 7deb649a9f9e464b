//! `--init`: a tiny init as the container's PID 1.
//!
//! PID 1 has two duties no ordinary program expects: every orphaned
//! process in the PID namespace becomes its child, so it must *reap* them
//! (`wait` for them) or they stay zombies (`Z` in `ps`); and the kernel
//! shields it from signals it has no handler for, so `docker stop`'s
//! SIGTERM does nothing to a shell or a program that never installed one.
//!
//! With `--init` the container's process forks just before it becomes the
//! command (docker runs `tini` for this, as `docker-init`):
//!
//! ```text
//!  PID 1: crabbox-init                 PID 2: the command
//!  ───────────────────                 ──────────────────
//!  every signal blocked, sigwait ◀──── exec(argv)
//!  SIGTERM, SIGINT, … → kill(2, sig)
//!  SIGCHLD → waitpid(-1) until none left
//!  PID 2 exited with N → exit(N)   (signal S → exit(128+S))
//! ```

use ch01_images::explain;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The name PID 1 shows in `ps` and `/proc/1/comm`.
pub const NAME: &str = "crabbox-init";

// ANCHOR: init
/// Forks: returns in the child, which goes on to exec `command`; the
/// parent stays behind as PID 1 and never returns.
pub fn fork_init(command: &[String]) -> Result<(), String> {
    explain::step(
        "--init: PID 1 stays a tiny init that forwards signals and reaps zombies; the command runs as its child",
        Some("tini -- COMMAND…   # what docker run --init does"),
    );
    // All signals wait in the queue until the init asks for them; the
    // command unblocks them before exec.
    SigSet::all()
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    // SAFETY: the container's process is single-threaded.
    match unsafe { fork() }.map_err(|e| format!("fork for --init: {e}"))? {
        ForkResult::Child => {
            // With a terminal, the command's process group is the one
            // that reads it (the foreground), as a shell would arrange.
            let me = nix::unistd::getpid();
            let _ = nix::unistd::setpgid(me, me);
            if nix::unistd::isatty(0).unwrap_or(false) {
                let _ = nix::unistd::tcsetpgrp(std::io::stdin(), me);
            }
            Ok(())
        }
        ForkResult::Parent { child } => {
            // Nothing of the engine stays open in PID 1 (the report pipe
            // among them: the engine must see it close when the command
            // execs).
            // SAFETY: a system call with integer arguments.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            if let Ok(name) = std::ffi::CString::new(NAME) {
                // SAFETY: PR_SET_NAME reads a NUL-terminated string.
                unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
            }
            let mut words = vec![format!("/sbin/{NAME}"), "--".to_string()];
            words.extend(command.iter().cloned());
            set_command_line(&words);
            let code = supervise(child);
            // SAFETY: ending this process; nothing to clean up.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Rewrites what `ps` shows as this process's command line. The kernel
/// reads it from the process's own memory, the bytes between `arg_start`
/// and `arg_end` (fields 48 and 49 of /proc/self/stat): the engine's
/// original argv, host paths included, which PID 1 would otherwise show.
/// The new words must fit where the old ones were; they are cut if not.
fn set_command_line(words: &[String]) {
    let Some(fields) = crate::process::stat_fields("self") else {
        return;
    };
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.get(45).map(|f| f.parse::<usize>()),
        fields.get(46).map(|f| f.parse::<usize>()),
    ) else {
        return;
    };
    if end <= start {
        return;
    }
    let mut bytes = words.join("\0").into_bytes();
    // NUL-padded to the old length; the last byte is always a NUL.
    bytes.resize(end - start - 1, 0);
    bytes.push(0);
    // SAFETY: [start, end) is this process's argv area (the kernel says
    // so), writable memory that nothing else in this process reads any
    // more: the container's PID 1 only supervises from here on.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, bytes.len()) };
}

/// The init's loop: reap every child, pass every signal on to the
/// command, exit with the command's code once it is gone.
fn supervise(command: Pid) -> i32 {
    let all = SigSet::all();
    loop {
        let mut code = None;
        // Reap everything that has exited: the command, and any orphan.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, c)) if pid == command => code = Some(c),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == command => {
                    code = Some(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Some(code) = code {
            return code;
        }
        match all.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(signal) => {
                let _ = kill(command, signal);
            }
            Err(_) => return 125,
        }
    }
}
// ANCHOR_END: init
