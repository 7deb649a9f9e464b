//! The container's side of `spawn`: what its first process does, inside
//! its new namespaces, between `clone` and `execve`.
//!
//! ```text
//!  non-dumpable ─▶ waits at the gate ─▶ mounts, /dev, (-t: its terminal), lo, hostname
//!  ─▶ pivot_root ─▶ masked and read-only /proc paths ─▶ user, working directory, stdin
//!  ─▶ becomes the command (see `exec_command`)
//! ```
//!
//! Until `execve`, this process is the engine's own binary running in the
//! container's namespaces, with the host's root filesystem still in reach
//! until `pivot_root`. Any failure is written on the report pipe (an exit
//! code and a message) for the engine to say why `run` failed.

use crate::devices;
use crate::exec_command::{self, Command, Failure};
use crate::mounts;
use crate::namespaces;
use crate::pivot;
use crate::spec::ContainerSpec;
use crate::user;
use ch01_images::explain;
use nix::sys::signal::Signal;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

/// The child: wait at the gate, set up, exec. Never returns on success;
/// on failure reports through the report pipe and exits.
/// `(sync_read, report_write, tty_socket)` are its ends of the pipes;
/// `parent_fds` the engine's ends, closed here at once.
pub(crate) fn child_main(
    spec: &ContainerSpec,
    seccomp: &crate::seccomp::Prepared,
    (sync_read, report_write, tty_socket): (RawFd, RawFd, Option<RawFd>),
    parent_fds: (RawFd, RawFd, Option<RawFd>),
) -> isize {
    // Copies of the parent's descriptors in our own descriptor table:
    // closing them does not touch the parent's.
    for fd in [Some(parent_fds.0), Some(parent_fds.1), parent_fds.2]
        .into_iter()
        .flatten()
    {
        let _ = nix::unistd::close(fd);
    }
    // ANCHOR: dumpable
    // From its first instruction to its `execve`, this process is the
    // engine's binary running inside the container's PID namespace: a
    // process of the container could open /proc/1/exe (the engine binary
    // on the host) or read our memory. Non-dumpable, /proc/PID/* belongs
    // to root of the host's user namespace and ptrace is refused (runc's
    // CVE-2019-5736). `execve` of the image's command resets it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // ANCHOR_END: dumpable
    // Set before the gate: if `run` is killed from here on, the kernel
    // kills us too (and if it died before this line, the gate's pipe is
    // closed and the read below ends the child).
    if spec.process.die_with_parent {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    }
    let mut gate = [0u8; 2];
    if !matches!(nix::unistd::read(sync_read, &mut gate), Ok(n) if n > 0) {
        // The parent went away (or a hook failed) before opening the gate.
        // SAFETY: ending this process before it runs anything.
        unsafe { libc::_exit(125) };
    }
    // --init: the init is a fresh exec of a sealed copy (see `init`).
    let Failure(code, message) = if spec.process.init {
        crate::init::reexec(spec, tty_socket, report_write)
    } else {
        match setup_and_exec(spec, tty_socket, report_write, seccomp) {
            Ok(never) => match never {},
            Err(failure) => failure,
        }
    };
    report_failure(report_write, code, &message)
}

/// Writes why the container could not start on the report pipe, and ends
/// the process with that exit code.
pub(crate) fn report_failure(report_write: RawFd, code: i32, message: &str) -> ! {
    // SAFETY: report_write is ours; the parent owns the other end.
    let mut report = unsafe { std::fs::File::from_raw_fd(report_write) };
    let _ = write!(report, "{code}\n{message}");
    drop(report);
    // SAFETY: ending this process; the report is written.
    unsafe { libc::_exit(code) }
}

// ANCHOR: setup
/// Everything the container's PID 1 does before it becomes the command,
/// in this order.
pub(crate) fn setup_and_exec(
    spec: &ContainerSpec,
    tty_socket: Option<RawFd>,
    report_write: RawFd,
    seccomp: &crate::seccomp::Prepared,
) -> Result<std::convert::Infallible, Failure> {
    // Our own session: the terminal's Ctrl-C goes to `run`, which forwards it.
    let _ = nix::unistd::setsid();
    mounts::make_private()?;
    for m in &spec.mounts {
        mounts::apply(&spec.rootfs, m)?;
    }
    devices::populate(&spec.rootfs.join("dev"))?;
    devices::add_given(&spec.rootfs.join("dev"), &spec.security.devices)?;
    let terminal = match tty_socket {
        Some(socket) => Some(crate::pty::open_in_container(&spec.rootfs, socket)?),
        None => None,
    };
    if spec.namespaces.iter().any(|n| n == "network") {
        explain::step(
            "bring up the loopback interface of the new network namespace",
            Some("ip link set lo up"),
        );
        namespaces::bring_up_loopback().map_err(|e| format!("bringing up lo: {e}"))?;
    }
    if spec.namespaces.iter().any(|n| n == "uts") {
        explain::step(
            "give the container its own hostname",
            Some(&format!("hostname {}", spec.hostname)),
        );
        nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    }
    pivot::pivot_root(&spec.rootfs)?;
    if spec.security.privileged {
        explain::step("--privileged: no masked or read-only /proc paths", None);
    } else {
        mounts::mask_and_protect()?;
    }
    if let Some(slave) = terminal {
        crate::pty::make_controlling(slave)?;
    }

    let process = &spec.process;
    // After pivot_root: a user name is looked up in the image's /etc.
    let ids = user::resolve(&process.user, Path::new("/etc"))?;
    // docker creates a missing working directory.
    std::fs::create_dir_all(&process.cwd).map_err(|e| format!("mkdir {}: {e}", process.cwd))?;
    nix::unistd::chdir(process.cwd.as_str()).map_err(|e| format!("cd {}: {e}", process.cwd))?;
    if !process.stdin && !process.tty {
        redirect_stdin_from_null()?;
    }
    exec_command::become_command(
        Command {
            args: &process.args,
            env: process.env.clone(),
            ids,
            capabilities: spec.security.capabilities,
            seccomp,
            die_with_parent: process.die_with_parent.then_some(report_write),
            init: process.init,
        },
        Failure::from,
    )
}
// ANCHOR_END: setup

/// Without `-i` (or `-t`), the command reads `/dev/null`, as with docker.
pub(crate) fn redirect_stdin_from_null() -> Result<(), String> {
    let null = std::fs::File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| format!("stdin from /dev/null: {e}"))?;
    Ok(())
}
