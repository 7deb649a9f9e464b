//! Becoming the command: the last steps of every process the engine
//! starts inside a container, the container's PID 1 (`run`, see `child`)
//! and a command of `exec` alike.
//!
//! ```text
//!  capabilities ─▶ setgroups, setgid, setuid ─▶ no_new_privs ─▶ (PID 1 of run: pdeathsig)
//!  ─▶ seccomp ─▶ (--init: fork, the init stays behind) ─▶ find the program in PATH
//!  ─▶ every fd but 0 1 2 close-on-exec ─▶ signals reset ─▶ execve
//! ```
//!
//! The order matters: capabilities are dropped while still root (dropping
//! needs `CAP_SETPCAP`); the user changes before `no_new_privs`, and the
//! seccomp filter comes last of the walls, so the steps before it may
//! still use the system calls it refuses. On failure the process does not
//! run anything: it returns a `Failure`, an exit code and a message,
//! which its caller reports to the engine.

use crate::capabilities;
use crate::spec::DEFAULT_PATH;
use crate::user::Ids;
use ch01_images::explain;
use nix::sys::signal::Signal;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// Why the process could not become the command: docker's exit code
/// (125 setup, 126 cannot run, 127 not found) and a message.
pub(crate) struct Failure(pub(crate) i32, pub(crate) String);

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure(125, format!("container setup failed: {message}"))
    }
}

/// What a process in the container becomes, and the walls on its way.
pub(crate) struct Command<'a> {
    /// The command's `argv`: the first word is looked up in its PATH.
    pub(crate) args: &'a [String],
    /// Its environment; HOME is added from `ids` when unset.
    pub(crate) env: Vec<String>,
    /// Its user and groups (see `user::resolve`).
    pub(crate) ids: Ids,
    /// The capabilities it keeps, as a bit mask (see `capabilities`).
    pub(crate) capabilities: u64,
    /// Its seccomp filter, compiled by the engine (see `seccomp`).
    pub(crate) seccomp: &'a crate::seccomp::Prepared,
    /// The PID 1 of a foreground `run` dies with it: the write end of the
    /// report pipe, whose reader is that `run` (see [`become_command`]).
    pub(crate) die_with_parent: Option<RawFd>,
    /// `--init`: a tiny init stays behind as PID 1 (see `init`).
    pub(crate) init: bool,
}

// ANCHOR: become
/// Becomes `command`: drops capabilities, changes user, sets
/// `no_new_privs`, installs the seccomp filter, then execs. Never returns
/// on success. `setup_failed` turns a failing step's message into the
/// caller's [`Failure`] (`run` says 125, `exec` says 126).
pub(crate) fn become_command(
    command: Command,
    setup_failed: fn(String) -> Failure,
) -> Result<Infallible, Failure> {
    let Command {
        args, mut env, ids, ..
    } = command;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home.as_deref().unwrap_or("/")));
    }
    capabilities::restrict_to(command.capabilities).map_err(setup_failed)?;
    become_user(&ids).map_err(setup_failed)?;
    capabilities::set_no_new_privs().map_err(setup_failed)?;
    if let Some(report_write) = command.die_with_parent {
        die_with_parent(report_write).map_err(setup_failed)?;
    }
    // Last of the walls: from here on, only the system calls the profile
    // allows, for the command and for `--init`'s PID 1 alike.
    crate::seccomp::install(command.seccomp).map_err(setup_failed)?;
    if command.init {
        crate::init::fork_init().map_err(setup_failed)?;
    }

    let program = find_executable(&args[0], &env)?;
    close_inherited_fds();
    crate::signals::reset_signals();
    explain::step(
        &format!("become the command: {}", args.join(" ")),
        Some(&format!(
            "exec {}",
            args.iter()
                .map(|a| explain::shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    );
    exec(&program, args, &env)
}
// ANCHOR_END: become

/// setgroups, setgid, setuid: in this order, since only root may change
/// its groups. From root to another uid, the kernel clears the permitted
/// and effective capabilities: a non-root user gets none, as with docker.
fn become_user(ids: &Ids) -> Result<(), String> {
    explain::step(
        &format!(
            "become uid {} gid {} (groups {:?})",
            ids.uid, ids.gid, ids.groups
        ),
        Some(&format!(
            "setpriv --reuid {} --regid {} --groups {} …",
            ids.uid,
            ids.gid,
            join_ids(&ids.groups)
        )),
    );
    let groups: Vec<nix::unistd::Gid> = ids
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(ids.gid))
        .map_err(|e| format!("setgid {}: {e}", ids.gid))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(ids.uid))
        .map_err(|e| format!("setuid {}: {e}", ids.uid))?;
    Ok(())
}

fn join_ids(ids: &[u32]) -> String {
    if ids.is_empty() {
        return "''".into();
    }
    ids.iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The PID 1 of a foreground `run` dies with it.
fn die_with_parent(report_write: RawFd) -> Result<(), String> {
    // ANCHOR: pdeathsig
    // A foreground `run` is the only process that would ever wait for this
    // container: if it dies, even by SIGKILL, the kernel kills PID 1 too,
    // and with it the whole PID namespace. Set at the child's first
    // instruction, and again here because setuid to another user clears
    // it; kept across exec.
    explain::step(
        "if this `run` dies, the container dies with it",
        Some("setpriv --pdeathsig KILL …   # what unshare --kill-child does"),
    );
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    // Did `run` die between setuid and the line above? Then nobody
    // reads the report pipe any more: its write end shows POLLERR.
    if parent_is_gone(report_write) {
        // SAFETY: ending this process before it runs anything.
        unsafe { libc::_exit(125) };
    }
    // ANCHOR_END: pdeathsig
    Ok(())
}

/// Has the reader of pipe `write_end` gone (the engine process that
/// started us died)? A pipe's write end polls POLLERR without a reader.
fn parent_is_gone(write_end: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: write_end,
        events: 0,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & libc::POLLERR != 0
}

// ANCHOR: fds
/// Marks every descriptor but 0, 1 and 2 close-on-exec, so nothing the
/// engine (or whoever started it) had open leaks into the container.
/// `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)` does it in one call; the
/// report pipe is among them, and closing at exec is exactly its job.
pub(crate) fn close_inherited_fds() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: a system call with integer arguments.
    let done =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) } == 0;
    if !done {
        // Older kernels (before 5.11): one by one, from /proc/self/fd.
        let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            // SAFETY: setting a flag on a descriptor number.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}
// ANCHOR_END: fds

// ANCHOR: exec
/// Finds `name` as a shell would: a name with a `/` is a path, any other
/// name is looked up in the container's PATH (from its env, not ours).
pub(crate) fn find_executable(name: &str, env: &[String]) -> Result<PathBuf, Failure> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Failure(
                127,
                format!("exec: {name:?}: executable file not found in $PATH"),
            )
        })
}

/// `execve`: on success this process *is* the command and this function
/// never returns. Docker's codes on failure: 127 when the file does not
/// exist, 126 when it exists but cannot be run (not executable, not a
/// program, a directory).
pub(crate) fn exec(program: &Path, args: &[String], env: &[String]) -> Result<Infallible, Failure> {
    let c =
        |s: &str| CString::new(s).map_err(|_| Failure(125, format!("{s:?} contains a NUL byte")));
    let program_c = c(&program.to_string_lossy())?;
    let args_c = args.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let env_c = env.iter().map(|e| c(e)).collect::<Result<Vec<_>, _>>()?;
    let errno = match nix::unistd::execve(&program_c, &args_c, &env_c) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    let code = if errno == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    Err(Failure(
        code,
        format!(
            "exec: {:?}: {}",
            program.display().to_string(),
            errno.desc().to_lowercase()
        ),
    ))
}
// ANCHOR_END: exec
