//! `--init`: a tiny init as the container's PID 1.
//!
//! PID 1 has two duties no ordinary program expects: every orphaned
//! process in the PID namespace becomes its child, so it must *reap* them
//! (`wait` for them) or they stay zombies (`Z` in `ps`); and the kernel
//! shields it from signals it has no handler for, so `docker stop`'s
//! SIGTERM does nothing to a shell or a program that never installed one.
//!
//! With `--init` the container's process does not exec the command: it
//! execs the init (docker runs `tini` for this, as `docker-init`), which
//! forks the command and stays behind:
//!
//! ```text
//!  PID 1: crabbox-init                 PID 2: the command
//!  ───────────────────                 ──────────────────
//!  every signal blocked, sigwait ◀──── exec(argv)
//!  SIGTERM, SIGINT, … → kill(2, sig)
//!  SIGCHLD → waitpid(-1) until none left
//!  PID 2 exited with N → exit(N)   (signal S → exit(128+S))
//! ```
//!
//! **Which binary is the init?** Ours: the engine binary itself. But never
//! the engine's *file* on the host: PID 1 lives as long as the container,
//! and `/proc/1/exe` is a door to the file a process runs. Through it,
//! container root could open the host's engine binary for writing
//! (runc's CVE-2019-5736: the next `run` on the host then runs the
//! attacker's code as root). So with `--init` the container's first
//! process, still outside the container's root, re-executes itself from a
//! **sealed memfd** ([`sealed_copy`]): an anonymous, in-memory copy of the
//! binary whose seals forbid any write, forever. That new program, started
//! as `/sbin/crabbox-init -- COMMAND…` and recognised by [`main_if_init`]
//! (the first line of every chapter binary's `main`), does the container's
//! setup as usual, then [`fork_init`]s. runc does the same for its own
//! `runc init`. Why not exec the memfd at the very end, after
//! `pivot_root`? Our binary is dynamically linked: its loader and libc
//! would be looked for in the *image*, where they may not be.

use crate::child;
use crate::exec_command::Failure;
use crate::spec::ContainerSpec;
use ch01_images::explain;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// The name PID 1 shows in `ps` and `/proc/1/comm`.
pub const NAME: &str = "crabbox-init";

/// The init's `argv[0]`: how [`main_if_init`] knows it is the init, and
/// what `ps` shows (`/sbin/crabbox-init -- COMMAND…`, as docker's
/// `/sbin/docker-init -- COMMAND…`; no such file exists in the image).
pub const ARGV0: &str = "/sbin/crabbox-init";

/// Where the re-executed init finds what the engine hands it: the spec
/// (a memfd holding its JSON), the report pipe, and the terminal socket
/// of `-t` (closed when there is none).
const SPEC_FD: RawFd = 3;
const REPORT_FD: RawFd = 4;
const TTY_FD: RawFd = 5;

// ANCHOR: memfd
/// A copy of the running engine binary in a sealed memfd: a file that
/// lives in memory only, and whose seals forbid any write, resize or
/// change of seals, forever.
pub fn sealed_copy() -> Result<OwnedFd, String> {
    explain::step(
        "--init: copy the engine binary into a sealed memfd, so PID 1 never runs the host's file (CVE-2019-5736)",
        None,
    );
    let memfd = memfd(NAME)?;
    let mut binary = std::fs::File::open("/proc/self/exe")
        .map_err(|e| format!("opening /proc/self/exe: {e}"))?;
    let mut copy = std::fs::File::from(memfd.try_clone().map_err(|e| format!("dup: {e}"))?);
    // In the kernel (copy_file_range or sendfile): no pass through our memory.
    std::io::copy(&mut binary, &mut copy).map_err(|e| format!("copying the engine binary: {e}"))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl with integer arguments on a descriptor we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(format!(
            "sealing the memfd: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(memfd)
}
// ANCHOR_END: memfd

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
fn memfd(name: &str) -> Result<OwnedFd, String> {
    let name = CString::new(name).expect("no NUL");
    // SAFETY: a NUL-terminated name and integer flags.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ANCHOR: reexec
/// In the container's first process, right after the gate: re-executes
/// the engine from a sealed copy, as the init. Returns only on failure.
pub(crate) fn reexec(spec: &ContainerSpec, tty_socket: Option<RawFd>, report: RawFd) -> Failure {
    let attempt = || -> Result<std::convert::Infallible, String> {
        let binary = sealed_copy()?;
        let spec_json = memfd("crabbox-spec")?;
        let mut file = std::fs::File::from(spec_json);
        file.write_all(&serde_json::to_vec(spec).expect("serializes"))
            .and_then(|()| file.rewind())
            .map_err(|e| format!("writing the spec for the init: {e}"))?;
        // Onto the fixed numbers the init expects. Each source is first
        // copied out of the way (to 10 and up), so that no dup2 overwrites
        // a source still needed; from here on only raw numbers are used,
        // since the numbers 3 to 5 may be closed or replaced under them.
        let binary = binary.into_raw_fd();
        let spec_fd = std::os::fd::OwnedFd::from(file).into_raw_fd();
        let high = |fd: RawFd| {
            // SAFETY: fcntl with integer arguments.
            unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) }
        };
        let binary = high(binary);
        let sources = [
            Some(high(spec_fd)),
            Some(high(report)),
            tty_socket.map(high),
        ];
        for (target, source) in [SPEC_FD, REPORT_FD, TTY_FD].into_iter().zip(sources) {
            // SAFETY: integer descriptors of this process; dup2 leaves
            // the new descriptor open across exec.
            unsafe {
                match source {
                    Some(fd) if fd >= 0 => libc::dup2(fd, target),
                    _ => libc::close(target),
                }
            };
        }
        let mut argv = vec![c(ARGV0), c("--")];
        argv.extend(spec.process.args.iter().map(|a| c(a)));
        // The init's own environment: only the narration switch. The
        // command gets its environment from the spec.
        let env: Vec<CString> = explain::enabled()
            .then(|| c("CRABBOX_EXPLAIN=1"))
            .into_iter()
            .collect();
        match nix::unistd::fexecve(binary, &argv, &env) {
            Err(e) => Err(format!("exec of the init from its sealed copy: {e}")),
            Ok(never) => match never {},
        }
    };
    match attempt() {
        Ok(never) => match never {},
        Err(message) => Failure::from(message),
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// The first line of every chapter binary's `main`: when this process was
/// started as the init (by `reexec`), it sets up the container, runs the
/// command under the init and never returns; otherwise it returns at once.
pub fn main_if_init() {
    let mut args = std::env::args();
    if args.next().as_deref() != Some(ARGV0) || args.next().as_deref() != Some("--") {
        return;
    }
    // Dumpable again after exec: not for long (see `child`).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Our short name was the memfd's ("memfd:crabbox-i"): the init's own
    // name, before anything in the container can look.
    let name = CString::new(NAME).expect("no NUL");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    if std::env::var_os("CRABBOX_EXPLAIN").is_some() {
        explain::enable();
    }
    // SAFETY: the engine put these descriptors there for us (see `reexec`).
    let mut spec_file = unsafe { std::fs::File::from_raw_fd(SPEC_FD) };
    let mut json = Vec::new();
    let spec: Option<ContainerSpec> = spec_file
        .read_to_end(&mut json)
        .ok()
        .and_then(|_| serde_json::from_slice(&json).ok());
    drop(spec_file);
    // SAFETY: fcntl with integer arguments.
    let has_tty = unsafe { libc::fcntl(TTY_FD, libc::F_GETFD) } >= 0;
    let Failure(code, message) = match spec {
        Some(spec) => match crate::seccomp::prepare(&spec.security) {
            Ok(seccomp) => {
                match child::setup_and_exec(&spec, has_tty.then_some(TTY_FD), REPORT_FD, &seccomp) {
                    Ok(never) => match never {},
                    Err(failure) => failure,
                }
            }
            Err(message) => Failure::from(message),
        },
        None => Failure(125, "the init could not read its spec".into()),
    };
    child::report_failure(REPORT_FD, code, &message)
}
// ANCHOR_END: reexec

// ANCHOR: init
/// Forks: returns in the child, which goes on to exec `command`; the
/// parent stays behind as PID 1 and never returns.
pub fn fork_init() -> Result<(), String> {
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
            let code = supervise(child);
            // SAFETY: ending this process; nothing to clean up.
            unsafe { libc::_exit(code) }
        }
    }
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
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(command) => {
                    code = crate::process::exit_code(status).or(code);
                }
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
