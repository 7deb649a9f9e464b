//! `clone3`: a child born in its cgroup.
//!
//! `clone(2)` makes the child in the parent's cgroup; the engine would
//! then have to move it into the container's own, which costs the kernel
//! a wait for every CPU (see `cgroups::add`). `clone3(2)`, the newer form
//! with its arguments in a struct, has `CLONE_INTO_CGROUP`: the child
//! starts life in a cgroup v2 directory given by a descriptor. Used like a
//! fork: the child continues on a copy of the parent's memory, and the
//! return value says which side of the fork we are on.

use nix::unistd::Pid;
use std::os::fd::RawFd;

/// Which side of a fork-like clone we are on.
pub(crate) enum ForkedAs {
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
pub(crate) fn clone_into_cgroup(
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
