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
//!   run anything yet (chapter 6 puts a network interface into its network
//!   namespace there);
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
//! before returning, and [`spawn`] checks.

use crate::capabilities;
use crate::devices;
use crate::mounts;
use crate::namespaces;
use crate::pivot;
use crate::spec::{ContainerSpec, DEFAULT_PATH};
use crate::user;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

// ANCHOR: hooks
/// Extension point: code the engine runs around the container's life, in
/// the spirit of the OCI runtime spec's hooks. Both run in the parent.
pub trait Hooks {
    /// The child exists in its new namespaces (`pid` is its PID on the
    /// host) and waits at the gate: nothing of the image has run yet.
    /// Chapter 6 moves a veth end into the network namespace here. An error
    /// kills the child and fails `run` (exit code 125).
    fn after_create(&mut self, pid: Pid) -> Result<()> {
        let _ = pid;
        Ok(())
    }

    /// The container's PID 1 has exited and been reaped (cleanup).
    fn after_stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Chapter 3's hooks: nothing to wire yet, so they only narrate.
pub struct NarrateHooks;

impl Hooks for NarrateHooks {
    fn after_create(&mut self, pid: Pid) -> Result<()> {
        explain::step(
            &format!("the container exists (PID {pid} on the host, PID 1 inside) and waits for the go signal"),
            Some(&format!("ls -l /proc/{pid}/ns   # its namespaces")),
        );
        Ok(())
    }

    fn after_stop(&mut self) -> Result<()> {
        explain::step(
            "the container's PID 1 has exited; its namespaces are gone with it",
            None,
        );
        Ok(())
    }
}
// ANCHOR_END: hooks

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

/// How many threads this process has (from /proc/self/task).
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// The fields of `/proc/PID/stat` after the command name ("PID (comm) S
/// ppid …"; the name may hold spaces and parentheses, so the fields are
/// what follows the *last* ')'). Field N of proc(5) is at index N - 3.
pub fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

// ANCHOR: spawn
/// Creates the container's process, runs `hooks.after_create`, lets it go
/// and waits until it has exec'd the command. Returns its host PID.
/// Errors carry docker's exit codes: 127 not found, 126 cannot run, 125 engine.
pub fn spawn(spec: &ContainerSpec, hooks: &mut dyn Hooks) -> Result<Pid> {
    let result = spawn_gated(spec, hooks);
    if result.is_err() {
        let _ = watched_signals().thread_unblock();
    }
    result
}

fn spawn_gated(spec: &ContainerSpec, hooks: &mut dyn Hooks) -> Result<Pid> {
    if thread_count() != 1 {
        return Err(Error::new(
            "internal error: the engine has threads running; namespaces need a single-threaded fork",
        ));
    }
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
            let code = child_main(spec, &seccomp, child_fds, parent_fds);
            // SAFETY: the child ends here; child_main only returns on failure.
            unsafe { libc::_exit(code as i32) }
        }
        Some(Ok(ForkedAs::Parent(pid))) => Ok(pid),
        Some(Err(e)) => Err(e),
        None => {
            let callback = Box::new(|| child_main(spec, &seccomp, child_fds, parent_fds));
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

    if let Some(socket) = &tty_socket {
        // The terminal's master arrives once the container made it (or
        // the socket closes if its setup failed: the report says why).
        if let Some(master) = crate::pty::receive_master(socket) {
            crate::pty::keep_master(master, spec.process.stdin);
        }
    }
    drop(tty_socket);

    // End of file: the command was exec'd. Anything else: why it was not.
    let mut report = String::new();
    let _ = std::fs::File::from(report_read).read_to_string(&mut report);
    if report.is_empty() {
        return Ok(pid);
    }
    let _ = waitpid(pid, None);
    let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
    Err(Error::new(message.to_string()).with_exit_code(code.parse().unwrap_or(125)))
}
// ANCHOR_END: spawn

/// Which side of a fork-like clone we are on.
enum ForkedAs {
    Parent(Pid),
    Child,
}

// ANCHOR: clone3
/// `clone3(2)` like a fork (no new stack: the child continues on a copy of
/// ours), with the namespace `flags`, and `CLONE_INTO_CGROUP`: the child is
/// born in the cgroup v2 directory `cgroup_fd`, so nothing needs to move
/// it there afterwards (see `cgroups::add` for why that matters).
/// `None` when this kernel or a seccomp filter around us has no `clone3`
/// (inside a docker container it fails with ENOSYS): the caller falls
/// back to `clone`.
fn clone_into_cgroup(
    flags: nix::sched::CloneFlags,
    cgroup_fd: RawFd,
) -> Option<nix::Result<ForkedAs>> {
    /// The kernel's `struct clone_args` (linux/sched.h), up to `cgroup`.
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the process is single-threaded (checked by the caller); the
    // arguments are the kernel's layout, with no stack: as with fork, the
    // child runs on its own copy of our memory.
    let result = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match result {
        0 => Some(Ok(ForkedAs::Child)),
        pid if pid > 0 => Some(Ok(ForkedAs::Parent(Pid::from_raw(pid as i32)))),
        _ => match nix::errno::Errno::last() {
            nix::errno::Errno::ENOSYS => None,
            e => Some(Err(e)),
        },
    }
}
// ANCHOR_END: clone3

// ANCHOR: wait
/// Waits for the container's PID 1 to exit, forwarding the signals `run`
/// receives. Returns docker's exit code: the command's own, or 128+N when
/// signal N killed it.
pub fn wait(pid: Pid) -> Result<i32> {
    let watched = watched_signals();
    if let Some((master, stdin)) = crate::pty::take_master() {
        return crate::pty::relay(master, pid, stdin, &watched);
    }
    let code = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) => {}
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

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::new(format!("pipe: {e}")))
}

/// Why the child could not become the command: an exit code and a message.
pub(crate) struct Failure(pub(crate) i32, pub(crate) String);

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure(125, format!("container setup failed: {message}"))
    }
}

/// The child: wait at the gate, set up, exec. Never returns on success;
/// on failure reports through the report pipe and exits.
fn child_main(
    spec: &ContainerSpec,
    seccomp: &crate::seccomp::Prepared,
    (sync_read, report_write, tty_socket): (RawFd, RawFd, Option<RawFd>),
    parent_fds: (RawFd, RawFd, Option<RawFd>),
) -> isize {
    // SAFETY: these are copies of the parent's descriptors in our own
    // descriptor table; closing them does not touch the parent's.
    unsafe {
        libc::close(parent_fds.0);
        libc::close(parent_fds.1);
        if let Some(fd) = parent_fds.2 {
            libc::close(fd);
        }
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
    // SAFETY: reading into a buffer we own.
    if unsafe { libc::read(sync_read, gate.as_mut_ptr().cast(), gate.len()) } <= 0 {
        // The parent went away (or a hook failed) before opening the gate.
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
    let ids = user::resolve(&process.user, Path::new("/etc"))?;
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home.as_deref().unwrap_or("/")));
    }
    // docker creates a missing working directory.
    std::fs::create_dir_all(&process.cwd).map_err(|e| format!("mkdir {}: {e}", process.cwd))?;
    nix::unistd::chdir(process.cwd.as_str()).map_err(|e| format!("cd {}: {e}", process.cwd))?;
    if !process.stdin && !process.tty {
        redirect_stdin_from_null()?;
    }

    capabilities::restrict_to(spec.security.capabilities)?;
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
    // From root to another uid, the kernel clears the permitted and
    // effective capabilities: a non-root user gets none, as with docker.
    nix::unistd::setuid(nix::unistd::Uid::from_raw(ids.uid))
        .map_err(|e| format!("setuid {}: {e}", ids.uid))?;
    capabilities::set_no_new_privs()?;
    // ANCHOR: pdeathsig
    // A foreground `run` is the only process that would ever wait for this
    // container: if it dies, even by SIGKILL, the kernel kills PID 1 too,
    // and with it the whole PID namespace. Set at the child's first
    // instruction, and again here because setuid to another user clears
    // it; kept across exec.
    if process.die_with_parent {
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
    }
    // ANCHOR_END: pdeathsig
    // Last of the walls: from here on, only the system calls the profile
    // allows, for the command and for `--init`'s PID 1 alike.
    crate::seccomp::install(seccomp).map_err(Failure::from)?;
    if process.init {
        crate::init::fork_init()?;
    }

    let program = find_executable(&process.args[0], &env)?;
    close_inherited_fds();
    reset_signals();
    explain::step(
        &format!("become the command: {}", process.args.join(" ")),
        Some(&format!(
            "exec {}",
            process
                .args
                .iter()
                .map(|a| explain::shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    );
    exec(&program, &process.args, &env)
}
// ANCHOR_END: setup

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

fn join_ids(ids: &[u32]) -> String {
    if ids.is_empty() {
        return "''".into();
    }
    ids.iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",")
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

pub(crate) fn redirect_stdin_from_null() -> Result<(), String> {
    let null = std::fs::File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| format!("stdin from /dev/null: {e}"))?;
    Ok(())
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
pub(crate) fn exec(
    program: &Path,
    args: &[String],
    env: &[String],
) -> Result<std::convert::Infallible, Failure> {
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
