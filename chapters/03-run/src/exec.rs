//! `exec`: run one more command inside a running container.
//!
//! A container is only a process in namespaces, so "entering" it is
//! joining those namespaces: `setns(2)` with a descriptor of each
//! `/proc/PID/ns/*` file of its PID 1, what `nsenter` does.
//!
//! ```text
//!  exec (caller)  fork ─▶ M: setns ipc, uts, net, pid, then mnt (last)
//!                            fork ─▶ G: in the container's PID namespace:
//!                                       cd, user, capabilities, no_new_privs, exec CMD
//!                            waitpid(G), exit with its code
//!  waitpid(M): the command's exit code
//! ```
//!
//! Two subtleties, as runc handles them:
//! * the mount namespace is joined **last**: after it, `/proc` is the
//!   container's, and the host's `/proc/PID/ns/*` are no longer reachable
//!   (the descriptors are all opened beforehand anyway);
//! * `setns` on a PID namespace does not move the caller (its PID cannot
//!   change): it decides where the caller's *children* are born. So M
//!   forks, and G is a process of the container (`ps` there shows it).
//!
//! With `-t`, M opens a new terminal in the container's own `/dev/pts`
//! (it is in the container's mount namespace by then), gives G the slave
//! as its controlling terminal, and relays the master to the caller's
//! terminal exactly as `run -it` does (see `pty`).

use crate::capabilities;
use crate::lifecycle::{self, Found};
use crate::process::{self, Failure};
use crate::user;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// `exec` flags beyond the command.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// `-e KEY=VALUE` added to the container's environment.
    pub env: Vec<String>,
    /// `-w DIR` instead of the container's working directory.
    pub workdir: Option<String>,
    /// `-u USER` instead of the container's user.
    pub user: Option<String>,
    /// `-i`: keep stdin (otherwise /dev/null).
    pub stdin: bool,
    /// `-t`: a terminal of the container's own (see `pty`).
    pub tty: bool,
}

/// The namespaces joined, in order (mount last), as `/proc/PID/ns` names.
const JOIN: [(&str, &str, CloneFlags); 5] = [
    ("ipc", "--ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", "--uts", CloneFlags::CLONE_NEWUTS),
    ("net", "--net", CloneFlags::CLONE_NEWNET),
    ("pid", "--pid", CloneFlags::CLONE_NEWPID),
    ("mnt", "--mount", CloneFlags::CLONE_NEWNS),
];

// ANCHOR: exec
/// Runs `args` in the running container; returns the command's exit code.
pub fn exec(found: &Found, options: &ExecOptions, args: &[String]) -> Result<i32> {
    let state = lifecycle::effective_state(&found.dir);
    let not_running =
        || Error::new(format!("container {} is not running", found.config.id)).with_exit_code(1);
    let pid = match state.pid {
        Some(pid) if state.status == "running" => pid,
        _ => return Err(not_running()),
    };
    if process::thread_count() != 1 {
        return Err(Error::new(
            "internal error: the engine has threads running; setns needs a single-threaded process",
        ));
    }
    explain::step(
        &format!("join the namespaces of the container's PID 1 (PID {pid} on the host), the mount namespace last, then fork into its PID namespace"),
        Some(&format!(
            "nsenter --target {pid} --mount --uts --ipc --net --pid -- {}",
            args.iter().map(|a| explain::shell_quote(a)).collect::<Vec<_>>().join(" ")
        )),
    );
    let mut namespaces = Vec::new();
    for (name, _, flag) in JOIN {
        let path = format!("/proc/{pid}/ns/{name}");
        let file = File::open(&path).map_err(|e| Error::new(format!("opening {path}: {e}")))?;
        namespaces.push((OwnedFd::from(file), flag));
    }
    // Opened, then checked: the PID was still the container's PID 1.
    if !lifecycle::alive(Some(pid), state.pid_start) {
        return Err(not_running());
    }
    // Compiled here, on the host, where the cache is (see `seccomp`).
    let seccomp = crate::seccomp::prepare(&found.config.spec.security).map_err(Error::new)?;
    let (report_read, report_write) = process::pipe()?;
    // SAFETY: single-threaded (checked above).
    match unsafe { fork() }.map_err(|e| Error::new(format!("fork: {e}")))? {
        ForkResult::Child => {
            // M joins the container's namespaces: non-dumpable from here
            // to G's exec (see `process`, CVE-2019-5736); G inherits it.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            drop(report_read);
            let mut report = File::from(report_write);
            let Failure(code, message) = match enter(found, options, args, namespaces, &seccomp) {
                Ok(code) => unsafe { libc::_exit(code) },
                Err(failure) => failure,
            };
            let _ = write!(report, "{code}\n{message}");
            drop(report);
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            drop(namespaces);
            let mut report = String::new();
            let _ = File::from(report_read).read_to_string(&mut report);
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
                _ => 125,
            };
            if report.is_empty() {
                return Ok(code);
            }
            let (code, message) = report.split_once('\n').unwrap_or(("126", &report));
            Err(Error::new(message.to_string()).with_exit_code(code.parse().unwrap_or(126)))
        }
    }
}
// ANCHOR_END: exec

/// In M: into the cgroup and the namespaces, then fork G and wait for it.
/// Returns G's exit code; a failure before G exec'd is reported.
fn enter(
    found: &Found,
    options: &ExecOptions,
    args: &[String],
    namespaces: Vec<(OwnedFd, CloneFlags)>,
    seccomp: &crate::seccomp::Prepared,
) -> Result<i32, Failure> {
    let fail = |what: &str, e: nix::errno::Errno| Failure(126, format!("{what}: {e}"));
    // The container's limits apply to exec'd commands too.
    if let Some(resources) = &found.config.spec.resources {
        crate::cgroups::add(resources, nix::unistd::getpid(), false)
            .map_err(|e| Failure(126, e.message().to_string()))?;
    }
    for (fd, flag) in &namespaces {
        nix::sched::setns(fd, *flag).map_err(|e| fail("setns", e))?;
    }
    drop(namespaces);
    // -t: in the container's mount namespace now, so this is its devpts.
    let terminal = if options.tty {
        explain::step(
            "-t: open a new pseudo-terminal in the container's /dev/pts for the command",
            Some("exec 3<>/dev/pts/ptmx"),
        );
        let (master, slave, _) =
            crate::pty::open_pair(Path::new("/dev/pts")).map_err(|m| Failure(126, m))?;
        Some((master, slave))
    } else {
        None
    };
    // Blocked before G exists, so that its exit cannot be missed; G
    // unblocks them before it execs.
    let watched = process::watched_signals();
    watched
        .thread_block()
        .map_err(|e| fail("blocking signals", e))?;
    // SAFETY: this process is single-threaded (a fork of one).
    match unsafe { fork() }.map_err(|e| fail("fork", e))? {
        // G's failure goes back up to `exec`, which reports it on the
        // pipe (still open here: it closes on exec).
        ForkResult::Child => {
            if let Some((master, slave)) = terminal {
                drop(master);
                nix::unistd::setsid().map_err(|e| fail("setsid", e))?;
                crate::pty::make_controlling(slave).map_err(|m| Failure(126, m))?;
            }
            match become_command(found, options, args, seccomp) {
                Ok(never) => match never {},
                Err(failure) => Err(failure),
            }
        }
        ForkResult::Parent { child } => {
            if let Some((master, slave)) = terminal {
                drop(slave);
                return crate::pty::relay(master, child, options.stdin, &watched)
                    .map_err(|e| Failure(126, e.message().to_string()));
            }
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
                _ => 125,
            };
            Ok(code)
        }
    }
}

/// In G, inside the container: the same user, capabilities, no_new_privs
/// and environment as its PID 1, then exec.
fn become_command(
    found: &Found,
    options: &ExecOptions,
    args: &[String],
    seccomp: &crate::seccomp::Prepared,
) -> Result<std::convert::Infallible, Failure> {
    let spec = &found.config.spec.process;
    let setup = |m: String| Failure(126, m);
    let mut env = spec.env.clone();
    for entry in &options.env {
        let (key, value) = match entry.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(entry) {
                Ok(v) => (entry.clone(), v),
                Err(_) => continue,
            },
        };
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    let user_spec = options.user.clone().unwrap_or_else(|| spec.user.clone());
    let ids = user::resolve(&user_spec, Path::new("/etc")).map_err(setup)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home.as_deref().unwrap_or("/")));
    }
    let cwd = options.workdir.clone().unwrap_or_else(|| spec.cwd.clone());
    nix::unistd::chdir(cwd.as_str()).map_err(|e| setup(format!("cd {cwd}: {e}")))?;
    if !options.stdin && !options.tty {
        process::redirect_stdin_from_null().map_err(setup)?;
    }
    capabilities::restrict_to(found.config.spec.security.capabilities).map_err(setup)?;
    let groups: Vec<nix::unistd::Gid> = ids
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| setup(format!("setgroups: {e}")))?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(ids.gid))
        .map_err(|e| setup(format!("setgid: {e}")))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(ids.uid))
        .map_err(|e| setup(format!("setuid: {e}")))?;
    capabilities::set_no_new_privs().map_err(setup)?;
    let program = process::find_executable(&args[0], &env)?;
    process::close_inherited_fds();
    process::reset_signals();
    // Last: the container's own seccomp filter, as for its PID 1.
    crate::seccomp::install(seccomp).map_err(setup)?;
    process::exec(&program, args, &env)
}
