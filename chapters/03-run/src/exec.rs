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

use crate::child;
use crate::exec_command::{self, Command, Failure};
use crate::find::Found;
use crate::process;
use crate::state::{alive, effective_state};
use crate::user;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use std::fs::File;
use std::io::Read;
use std::os::fd::{IntoRawFd, OwnedFd};
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
    let state = effective_state(&found.dir);
    let not_running =
        || Error::new(format!("container {} is not running", found.config.id)).with_exit_code(1);
    let pid = match state.pid {
        Some(pid) if state.is_running() => pid,
        _ => return Err(not_running()),
    };
    process::require_single_thread("setns needs a single-threaded process")?;
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
    if !alive(Some(pid), state.pid_start) {
        return Err(not_running());
    }
    // Compiled here, on the host, where the cache is (see `seccomp`).
    let seccomp = crate::seccomp::prepare(&found.config.spec.security).map_err(Error::new)?;
    let (report_read, report_write) = process::pipe()?;
    // SAFETY: single-threaded (checked above).
    match unsafe { fork() }.map_err(|e| Error::new(format!("fork: {e}")))? {
        ForkResult::Child => {
            // M joins the container's namespaces: non-dumpable from here
            // to G's exec (see `child`, CVE-2019-5736); G inherits it.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            drop(report_read);
            let Failure(code, message) = match enter(found, options, args, namespaces, &seccomp) {
                // SAFETY: M ends here with G's code, running none of the
                // caller's exit-time code (it is a fork of the caller).
                Ok(code) => unsafe { libc::_exit(code) },
                Err(failure) => failure,
            };
            child::report_failure(report_write.into_raw_fd(), code, &message)
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            drop(namespaces);
            let mut report = String::new();
            let _ = File::from(report_read).read_to_string(&mut report);
            let code = waited(child);
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
    let watched = crate::signals::watched_signals();
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
            Ok(waited(child))
        }
    }
}

/// Docker's exit code of `child` once it has ended (125 if it cannot be
/// waited for).
fn waited(child: nix::unistd::Pid) -> i32 {
    waitpid(child, None)
        .ok()
        .and_then(process::exit_code)
        .unwrap_or(125)
}

/// In G, inside the container: the same user, capabilities, no_new_privs,
/// seccomp filter and environment as its PID 1 (with `-e`, `-u`, `-w`),
/// then exec.
fn become_command(
    found: &Found,
    options: &ExecOptions,
    args: &[String],
    seccomp: &crate::seccomp::Prepared,
) -> Result<std::convert::Infallible, Failure> {
    let spec = &found.config.spec.process;
    let setup = |m: String| Failure(126, m);
    let mut env = spec.env.clone();
    crate::spec::merge_env(&mut env, &options.env);
    let user_spec = options.user.clone().unwrap_or_else(|| spec.user.clone());
    let ids = user::resolve(&user_spec, Path::new("/etc")).map_err(setup)?;
    let cwd = options.workdir.clone().unwrap_or_else(|| spec.cwd.clone());
    nix::unistd::chdir(cwd.as_str()).map_err(|e| setup(format!("cd {cwd}: {e}")))?;
    if !options.stdin && !options.tty {
        child::redirect_stdin_from_null().map_err(setup)?;
    }
    exec_command::become_command(
        Command {
            args,
            env,
            ids,
            capabilities: found.config.spec.security.capabilities,
            seccomp,
            die_with_parent: None,
            init: false,
        },
        setup,
    )
}
