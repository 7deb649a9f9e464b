//! The container's process: born in new namespaces, held at a gate until
//! the engine is ready, then turned into the user's command.
//!
//! ```text
//!  run (parent)                         child (PID 1 in its namespaces)
//!  ────────────                         ───────────────────────────────
//!  clone(CLONE_NEW*) ─────────────────▶ waits on the sync pipe
//!  hooks.after_create(pid)                 │
//!  writes one byte to the sync pipe ─────▶ mounts, /dev, hostname, lo,
//!  reads the report pipe …                 pivot_root, masks, user,
//!                                          capabilities, no_new_privs,
//!                                          closes every fd but 0 1 2,
//!  … EOF: exec worked ◀────────────────── execve(argv)  (report pipe is
//!  … or "127 exec: …": exec failed ◀──────  close-on-exec: success closes it)
//!  waitpid, forwarding SIGINT/SIGTERM…
//!  hooks.after_stop()
//! ```
//!
//! Two pipes, two classic tricks:
//! * the **sync pipe** is a gate: the child blocks reading it, so the
//!   engine can act on a child that exists in its namespaces but has not
//!   run anything yet (a networking extension puts a network interface into its
//!   network namespace there);
//! * the **report pipe** is close-on-exec: a successful `execve` closes it
//!   and the parent reads end-of-file, while a failure writes the exit code
//!   and a message before the child exits. That is how `run` can say
//!   "executable file not found" (127) instead of a bare exit status.
//!
//! The child is made with `clone(2)` and the namespace flags, which is
//! `unshare --fork` in one call: the child is PID 1 of the new PID
//! namespace. `clone` must come from a single-threaded process (a fork
//! copies only the calling thread, and a lock held by another thread would
//! stay locked forever in the child): `pull` joins its download threads
//! before returning, and [`spawn`] checks (`require_single_thread`).
//!
//! This module is the engine's side. The child's side is in `child` (its
//! setup inside the container) and `exec_command` (becoming the command);
//! the gate's hooks are in `hooks`, the signals in `signals`, and `-t`'s
//! terminal in `pty`.

use crate::clone3::{clone_into_cgroup, ForkedAs};
use crate::hooks::Hooks;
use crate::namespaces;
use crate::pty::Master;
use crate::signals::watched_signals;
use crate::spec::ContainerSpec;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// A container's process that runs the command, as [`spawn`] leaves it
/// for [`wait`]: its host PID and, with `-t`, its terminal's master.
/// Each container's own: two containers of one engine process never mix
/// their terminals.
#[must_use = "a spawned process must be waited for"]
pub struct Spawned {
    /// Its PID on the host.
    pub pid: Pid,
    /// `-t`: the engine's end of its terminal.
    pub terminal: Option<Master>,
}

/// Fails unless this process has a single thread: `fork`, `clone` and
/// `setns` of a mount or PID namespace need one. `needs` says which
/// ("namespaces need a single-threaded fork").
pub(crate) fn require_single_thread(needs: &str) -> Result<()> {
    if crate::procfs::thread_count() != 1 {
        return Err(Error::new(format!(
            "internal error: the engine has threads running; {needs}"
        )));
    }
    Ok(())
}

// ANCHOR: spawn
/// Creates the container's process, runs `hooks.after_create`, lets it go
/// and waits until it has exec'd the command. Returns its host PID (and,
/// with `-t`, its terminal's master), for [`wait`].
/// Errors carry docker's exit codes: 127 not found, 126 cannot run, 125 engine.
pub fn spawn(spec: &ContainerSpec, hooks: &mut dyn Hooks) -> Result<Spawned> {
    let result = spawn_gated(spec, hooks);
    if result.is_err() {
        let _ = watched_signals().thread_unblock();
    }
    result
}

fn spawn_gated(spec: &ContainerSpec, hooks: &mut dyn Hooks) -> Result<Spawned> {
    require_single_thread("namespaces need a single-threaded fork")?;
    let flags = namespaces::clone_flags(&spec.namespaces)?;
    // Compiled here, on the host, where the cache is (see `seccomp`).
    let seccomp = crate::seccomp::prepare(&spec.security).map_err(Error::new)?;
    let (sync_read, sync_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    // If whoever started us ignores SIGCHLD, the kernel would reap the
    // child itself and we could never read its exit code.
    // SAFETY: setting a disposition to its default is always sound.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // Block the signals we forward *before* the child exists, so none is
    // lost between clone and the wait loop. The child unblocks them.
    watched_signals()
        .thread_block()
        .map_err(|e| Error::new(format!("blocking signals: {e}")))?;
    explain::step(
        "create the container's process in new namespaces; it is PID 1 in its PID namespace",
        Some(&namespaces::unshare_command(&spec.namespaces)),
    );
    if let Some(resources) = &spec.resources {
        crate::cgroups::create(resources, &spec.security)?;
    }
    // -t: the container sends its terminal's master back on this socket.
    let tty_sockets = if spec.process.tty {
        Some(crate::pty::socket_pair()?)
    } else {
        None
    };
    let mut stack = vec![0u8; 1024 * 1024];
    let child_fds = (
        sync_read.as_raw_fd(),
        report_write.as_raw_fd(),
        tty_sockets.as_ref().map(|(_, child)| child.as_raw_fd()),
    );
    let parent_fds = (
        sync_write.as_raw_fd(),
        report_read.as_raw_fd(),
        tty_sockets.as_ref().map(|(parent, _)| parent.as_raw_fd()),
    );
    // Born in its cgroup v2 directory when there is one (see `cgroups::add`).
    let cgroup_v2 = spec
        .resources
        .as_ref()
        .and_then(crate::cgroups::v2_dir)
        .and_then(|dir| std::fs::File::open(dir).ok());
    let born = match &cgroup_v2 {
        Some(dir) => clone_into_cgroup(flags, dir.as_raw_fd()),
        None => None,
    };
    let in_v2 = matches!(born, Some(Ok(_)));
    if let (Some(Ok(ForkedAs::Parent(pid))), Some(dir)) = (
        &born,
        spec.resources.as_ref().and_then(crate::cgroups::v2_dir),
    ) {
        explain::step(
            "it is born in its cgroup v2 directory (clone3 with CLONE_INTO_CGROUP): nothing has to move it there",
            Some(&format!(
                "echo {pid} > {}/cgroup.procs   # the same result, but slower: see cgroups::add",
                dir.display()
            )),
        );
    }
    let pid = match born {
        Some(Ok(ForkedAs::Child)) => {
            let code = crate::child::child_main(spec, &seccomp, child_fds, parent_fds);
            // SAFETY: the child ends here; child_main only returns on failure.
            unsafe { libc::_exit(code as i32) }
        }
        Some(Ok(ForkedAs::Parent(pid))) => Ok(pid),
        Some(Err(e)) => Err(e),
        None => {
            let callback =
                Box::new(|| crate::child::child_main(spec, &seccomp, child_fds, parent_fds));
            // SAFETY: the process is single-threaded (checked above), and
            // without CLONE_VM the child gets its own copy of memory, as
            // with fork.
            unsafe { nix::sched::clone(callback, &mut stack, flags, Some(libc::SIGCHLD)) }
        }
    }
    .map_err(|e| {
        let hint = if e == nix::errno::Errno::EPERM {
            " — creating namespaces needs root (sudo)"
        } else {
            ""
        };
        Error::new(format!("clone with new namespaces: {e}{hint}"))
    })?;
    drop(cgroup_v2);
    // The child's ends belong to the child now.
    drop(sync_read);
    drop(report_write);
    let tty_socket = tty_sockets.map(|(parent, _child)| parent);

    // Into the cgroup while it still waits at the gate: nothing it runs
    // escapes the limits.
    let in_cgroup = match &spec.resources {
        Some(resources) => crate::cgroups::add(resources, pid, in_v2),
        None => Ok(()),
    };
    if let Err(e) = in_cgroup.and_then(|()| hooks.after_create(pid)) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    // Open the gate.
    let mut gate = std::fs::File::from(sync_write);
    let _ = gate.write_all(b"go");
    drop(gate);

    // The terminal's master arrives once the container made it (or the
    // socket closes if its setup failed: the report says why).
    let terminal = tty_socket
        .and_then(|socket| crate::pty::receive_master(&socket))
        .map(|fd| Master {
            fd,
            stdin: spec.process.stdin,
        });

    // End of file: the command was exec'd. Anything else: why it was not.
    let mut report = String::new();
    let _ = std::fs::File::from(report_read).read_to_string(&mut report);
    if report.is_empty() {
        return Ok(Spawned { pid, terminal });
    }
    let _ = waitpid(pid, None);
    let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
    Err(Error::new(message.to_string()).with_exit_code(code.parse().unwrap_or(125)))
}
// ANCHOR_END: spawn

// ANCHOR: wait
/// Waits for the container's PID 1 to exit, forwarding the signals `run`
/// receives (with `-t`, relaying its terminal too). Returns docker's exit
/// code: the command's own, or 128+N when signal N killed it.
pub fn wait(spawned: Spawned) -> Result<i32> {
    let Spawned { pid, terminal } = spawned;
    let watched = watched_signals();
    if let Some(master) = terminal {
        return crate::pty::relay(master.fd, pid, master.stdin, &watched);
    }
    let code = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    break code;
                }
            }
            Err(e) => return Err(Error::new(format!("waiting for the container: {e}"))),
        }
        // Sleeps until a watched signal is pending (they are blocked, so
        // one that came in the meantime is still there).
        let signal = watched
            .wait()
            .map_err(|e| Error::new(format!("waiting for signals: {e}")))?;
        if signal != Signal::SIGCHLD {
            explain::step(
                &format!("pass {signal} on to the container's PID 1"),
                Some(&format!(
                    "kill -{} {pid}",
                    signal.as_str().trim_start_matches("SIG")
                )),
            );
            let _ = kill(pid, signal);
        }
    };
    let _ = watched.thread_unblock();
    Ok(code)
}
// ANCHOR_END: wait

// ANCHOR: exit_code
/// Docker's exit code for a wait status: the command's own code, or
/// 128+N when signal N killed it. `None` while it has not ended (still
/// alive, stopped or continued).
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}
// ANCHOR_END: exit_code

/// A pipe, both ends close-on-exec.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::new(format!("pipe: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_dockers() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
        assert_eq!(exit_code(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
    }
}
