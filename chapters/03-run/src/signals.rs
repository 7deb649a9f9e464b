//! Signals between the engine and the container's process.
//!
//! The engine waits for its child the classic way: it *blocks* the
//! signals it cares about (the ones it forwards, and SIGCHLD, "a child
//! exited") before the child exists, then sleeps in `sigwait` until one
//! is pending. Nothing can slip through between `clone` and the wait.
//!
//! What a process blocks or ignores survives `execve`, so the child must
//! undo all of it before it becomes the command (`reset_signals`):
//! otherwise the container would start with SIGTERM blocked, or SIGPIPE
//! ignored because whoever started `run` ignored it.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Signals `run` passes on to the container (Ctrl-C is SIGINT).
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The signals the parent blocks and waits for with `sigwait`: the ones it
/// forwards, and SIGCHLD ("the child exited").
pub(crate) fn watched_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Unblocks every signal and sets each back to its default action, as a
/// new program expects. The engine blocks the signals it waits for, and a
/// blocked mask survives exec. An *ignored* signal stays
/// ignored across exec, and whoever started `run` may ignore some (every
/// Rust program ignores SIGPIPE: without this, `yes | head -1` in the
/// container would never end). Handled signals are reset by exec anyway.
///
/// The raw `rt_sigaction` system call, because glibc's `signal()` refuses
/// signals 32 and 33 (it keeps them for its threads), and those can arrive
/// ignored too.
pub(crate) fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    /// The kernel's `struct sigaction` (not libc's): handler, flags,
    /// restorer, mask. All zero is SIG_DFL with nothing blocked.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=libc::SIGRTMAX() {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: a valid sigaction for the kernel; no old action wanted.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }
}
