//! A seccomp profile: which system calls a container may make, as data.
//!
//! Capabilities decide what root may do *inside* a system call; a seccomp
//! filter decides which system calls reach the kernel at all. The kernel
//! has about 450 of them and a container needs about 350: the rest are
//! either not namespaced (the kernel's keyrings, the clock, kernel
//! modules), or large, rarely used doors into the kernel that have been the
//! way in for many exploits (`bpf`, `perf_event_open`, `io_uring`,
//! `userfaultfd`, new user namespaces). Closing them costs a container
//! almost nothing, and turns a kernel bug behind them into a harmless
//! `EPERM`.
//!
//! This module holds:
//!
//! * [`Profile`]: docker's JSON profile format (what `--security-opt
//!   seccomp=FILE` reads), as Rust types: a default action, and rules
//!   (`names`, `action`, `args` conditions) which `includes` and
//!   `excludes` tie to capabilities, architectures or kernel versions;
//! * [`default_profile`]: our default profile, written in those same
//!   types, equivalent to docker's (moby's `profiles/seccomp`) on x86_64
//!   and aarch64, one group per reason, each saying why;
//! * [`Profile::select`]: the rules that apply to one container, given its
//!   capabilities, the machine's architecture and kernel, as docker
//!   chooses them.
//!
//! Docker's list also names calls that exist only for 32-bit programs
//! (`chown32`, `fcntl64`, `socketcall`, the `*_time64` family…) or only on
//! other machines (s390, ppc64le, riscv64, 32-bit arm). Our filter covers
//! the native x86_64 or aarch64 calls alone (see `seccomp`), where those
//! names never match, so we leave them out.
//!
//! Turning the chosen rules into a BPF program and loading it is the
//! business of `seccomp`.

use serde::{Deserialize, Deserializer, Serialize};

// ANCHOR: types
/// A profile in docker's JSON format (`docker run --security-opt
/// seccomp=profile.json` takes the same file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What happens to a system call no rule matches. A profile with no
    /// default action and no rules means "no filter", as in docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
    /// The errno of an `SCMP_ACT_ERRNO` default action (EPERM if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The architectures the filter covers (`SCMP_ARCH_X86_64`, …).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<String>,
    /// Per native architecture, the other ABIs its processes can use
    /// (x86_64 can make 32-bit x86 calls).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch_map: Vec<ArchGroup>,
    /// The rules, in order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub syscalls: Vec<Rule>,
}

/// One entry of `archMap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchGroup {
    pub architecture: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sub_architectures: Vec<String>,
}

/// One rule: these system calls get this action (when `args` hold).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    /// The old single-name form of `names`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    /// The errno of `SCMP_ACT_ERRNO` (EPERM if absent), or the value a
    /// tracer sees for `SCMP_ACT_TRACE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Conditions on the arguments: all must hold (but see `seccomp` for
    /// two conditions on the same argument).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The rule applies only if all of these hold.
    #[serde(default, skip_serializing_if = "When::is_empty")]
    pub includes: When,
    /// The rule is dropped if any of these holds.
    #[serde(default, skip_serializing_if = "When::is_empty")]
    pub excludes: When,
}

/// A condition on the container or the machine, for `includes`/`excludes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct When {
    /// Capabilities (`CAP_SYS_ADMIN`): the container's bounding set.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    /// Architectures, with Go's names (`amd64`, `arm64`, `x86`, …).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
    /// A kernel version, `"4.8"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// A condition on one argument: `args[index] OP value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    /// Only for `SCMP_CMP_MASKED_EQ`: `(args[index] & value) == value_two`.
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

/// What happens to a matching system call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// It runs.
    #[default]
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    /// It fails with an errno, without reaching the kernel.
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// The thread is killed (SIGSYS).
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    /// The whole process is killed (SIGSYS).
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    /// The process gets a SIGSYS it may handle.
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    /// A ptrace tracer is told (without one: ENOSYS).
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    /// It runs, and the kernel logs it.
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    /// A supervisor decides (needs a listener: not supported here).
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// How an argument is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    Less,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterOrEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    Greater,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}
// ANCHOR_END: types

/// Go writes an empty list as `null`; docker's own profile has some.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

impl When {
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

/// The container and machine a profile is chosen for.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The container's capabilities (bounding set), as a bit mask.
    pub capabilities: u64,
    /// The native architecture, with Go's name (`amd64`, `arm64`).
    pub arch: &'static str,
    /// The running kernel's version, `(major, minor)`.
    pub kernel: (u64, u64),
}

impl Target {
    /// This machine, for a container with these capabilities.
    pub fn host(capabilities: u64) -> Target {
        Target {
            capabilities,
            arch: native_arch(),
            kernel: kernel_version(),
        }
    }

    fn has_cap(&self, name: &str) -> bool {
        crate::capabilities::NAMES
            .iter()
            .position(|n| *n == name)
            .is_some_and(|bit| self.capabilities & (1 << bit) != 0)
    }
}

/// The native architecture under Go's name, as docker's `arches` use it.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The running kernel's `major.minor` (0.0 if unknown).
fn kernel_version() -> (u64, u64) {
    // SAFETY: `uname` fills the zeroed struct we own; its fields are
    // NUL-terminated by the kernel.
    let release = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) != 0 {
            return (0, 0);
        }
        std::ffi::CStr::from_ptr(uts.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    parse_kernel(&release).unwrap_or((0, 0))
}

/// `"6.1.0-18-amd64"` or `"4.8"` → `(6, 1)` / `(4, 8)`.
fn parse_kernel(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

/// The architectures docker's profiles may name.
const KNOWN_ARCHES: [&str; 19] = [
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
];

impl Profile {
    /// Reads a profile in docker's JSON format, and checks what serde
    /// cannot: every mistake is an error here, before any container exists.
    pub fn from_json(json: &serde_json::Value) -> Result<Profile, String> {
        let profile: Profile = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
        profile.check()?;
        Ok(profile)
    }

    fn check(&self) -> Result<(), String> {
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err("both architectures and archMap are given: use one".into());
        }
        let arches = self
            .arch_map
            .iter()
            .flat_map(|group| std::iter::once(&group.architecture).chain(&group.sub_architectures));
        for arch in self.architectures.iter().chain(arches) {
            if !KNOWN_ARCHES.contains(&arch.as_str()) {
                return Err(format!(
                    "unknown architecture {arch:?} (e.g. SCMP_ARCH_X86_64)"
                ));
            }
        }
        if self.default_action.is_none() && !self.syscalls.is_empty() {
            return Err("defaultAction is missing (e.g. SCMP_ACT_ERRNO)".into());
        }
        if self.default_action == Some(Action::Notify) {
            return Err("SCMP_ACT_NOTIFY needs a listener, which this engine does not have".into());
        }
        if self.default_errno_ret.is_some() && self.default_action != Some(Action::Errno) {
            return Err("defaultErrnoRet is only for a defaultAction of SCMP_ACT_ERRNO".into());
        }
        for (n, rule) in self.syscalls.iter().enumerate() {
            let n = n + 1;
            if rule.name.is_some() && !rule.names.is_empty() {
                return Err(format!(
                    "syscalls rule {n}: both name and names are given: use names"
                ));
            }
            if rule.names().next().is_none() {
                return Err(format!("syscalls rule {n}: no names"));
            }
            if rule.action == Action::Notify {
                return Err(format!(
                    "syscalls rule {n}: SCMP_ACT_NOTIFY needs a listener, which this engine does not have"
                ));
            }
            if rule.errno_ret.is_some() && !matches!(rule.action, Action::Errno | Action::Trace) {
                return Err(format!(
                    "syscalls rule {n}: errnoRet is only for SCMP_ACT_ERRNO and SCMP_ACT_TRACE"
                ));
            }
            if rule.errno_ret.is_some_and(|e| e > u16::MAX.into()) {
                return Err(format!("syscalls rule {n}: errnoRet is too large"));
            }
            if let Some(arg) = rule.args.iter().find(|a| a.index > 5) {
                return Err(format!(
                    "syscalls rule {n}: argument index {} (a system call has 6: 0 to 5)",
                    arg.index
                ));
            }
            for when in [&rule.includes, &rule.excludes] {
                if let Some(text) = &when.min_kernel {
                    match parse_kernel(text) {
                        Some((0, 0)) | None => {
                            return Err(format!(
                            "syscalls rule {n}: minKernel {text:?} is not a version like \"4.8\""
                        ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if self.default_errno_ret.is_some_and(|e| e > u16::MAX.into()) {
            return Err("defaultErrnoRet is too large".into());
        }
        Ok(())
    }

    /// The rules that apply to `target`, as docker chooses them: a rule is
    /// dropped if its `excludes` name the architecture, any capability the
    /// container has, or a kernel at most this one; and kept only if its
    /// `includes` name the architecture, every capability, a kernel at
    /// most this one.
    pub fn select(&self, target: &Target) -> Vec<&Rule> {
        self.syscalls
            .iter()
            .filter(|rule| {
                let at_least = |when: &When| {
                    let min = when.min_kernel.as_deref().and_then(parse_kernel);
                    min.map(|min| target.kernel >= min)
                };
                let ex = &rule.excludes;
                let excluded = ex.arches.iter().any(|a| a == target.arch)
                    || ex.caps.iter().any(|c| target.has_cap(c))
                    || at_least(ex) == Some(true);
                let inc = &rule.includes;
                let included = (inc.arches.is_empty()
                    || inc.arches.iter().any(|a| a == target.arch))
                    && inc.caps.iter().all(|c| target.has_cap(c))
                    && at_least(inc) != Some(false);
                !excluded && included
            })
            .collect()
    }

    /// No default action and no rules: docker installs no filter.
    pub fn is_unconfined(&self) -> bool {
        self.default_action.is_none() && self.syscalls.is_empty()
    }
}

impl Rule {
    /// The names this rule covers (`names`, or the old `name`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().chain(&self.name).map(String::as_str)
    }
}

// ---------------------------------------------------------------------------
// Our default profile.
// ---------------------------------------------------------------------------

/// A rule that allows these system calls, with no condition yet.
fn allow(names: &[&str]) -> Rule {
    Rule {
        names: names.iter().map(|n| n.to_string()).collect(),
        ..Rule::default()
    }
}

/// A rule that makes these system calls fail with `errno`.
fn fail(names: &[&str], errno: i32) -> Rule {
    Rule {
        action: Action::Errno,
        errno_ret: Some(errno as u32),
        ..allow(names)
    }
}

impl Rule {
    /// Only for a container that has every one of these capabilities.
    fn only_with(mut self, caps: &[&str]) -> Rule {
        self.includes.caps = caps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Not for a container that has any of these capabilities.
    fn unless(mut self, caps: &[&str]) -> Rule {
        self.excludes.caps = caps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Only on these architectures (Go's names).
    fn on(mut self, arches: &[&str]) -> Rule {
        self.includes.arches = arches.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Only on a kernel at least this version.
    fn since_kernel(mut self, version: &str) -> Rule {
        self.includes.min_kernel = Some(version.to_string());
        self
    }

    /// Only when `args[index] OP value` (`value_two` for a masked compare).
    fn when(mut self, index: u32, op: Op, value: u64, value_two: u64) -> Rule {
        self.args.push(Arg {
            index,
            value,
            value_two,
            op,
        });
        self
    }
}

/// The namespace flags of `clone(2)`: a new namespace of any kind.
const NEW_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `personality(2)` values that change nothing a program could abuse.
const HARMLESS_PERSONALITIES: [u64; 5] = [
    0x0,         // PER_LINUX: the normal one
    0x0008,      // UNAME26: uname reports a 2.6 kernel, for old programs
    0x2_0000,    // PER_LINUX32: uname reports a 32-bit machine
    0x2_0008,    // PER_LINUX32 | UNAME26
    0xffff_ffff, // only asks for the current persona
];

// ANCHOR: default
/// Our default profile: an allow-list, equivalent to docker's default on
/// x86_64 and aarch64. Anything not listed fails with EPERM.
#[rustfmt::skip]
pub fn default_profile() -> Profile {
    let syscalls = vec![
        // Files and directories by path: what every program does. The
        // kernel still checks permissions and the container only sees its
        // own tree.
        allow(&[
            "access", "chdir", "chmod", "chown", "creat", "faccessat", "faccessat2", "fchdir",
            "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fstat", "fstatfs",
            "ftruncate", "futimesat", "getcwd", "getdents", "getdents64", "lchown", "link",
            "linkat", "lstat", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at",
            "newfstatat", "open", "openat", "openat2", "readlink", "readlinkat", "rename",
            "renameat", "renameat2", "rmdir", "stat", "statfs", "statx", "symlink", "symlinkat",
            "truncate", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimes",
        ]),
        // Extended attributes: more file metadata, same permission checks.
        allow(&[
            "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat",
            "lgetxattr", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr",
            "removexattr", "removexattrat", "setxattr", "setxattrat",
        ]),
        // Reading, writing and managing open files; `ioctl` too: devices
        // are limited by the devices cgroup, not here.
        allow(&[
            "cachestat", "close", "close_range", "copy_file_range", "dup", "dup2", "dup3",
            "fadvise64", "fallocate", "fcntl", "fdatasync", "flock", "fsync", "ioctl", "lseek",
            "pipe", "pipe2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2",
            "read", "readahead", "readv", "sendfile", "splice", "sync", "sync_file_range",
            "syncfs", "tee", "vmsplice", "write", "writev",
        ]),
        // Listing mounts, what /proc/self/mountinfo shows anyway: read-only.
        allow(&["listmount", "statmount"]),
        // Waiting for many files at once, and file-like events (timers,
        // signals, counters, file changes): how servers and shells wait.
        allow(&[
            "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
            "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark",
            "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "poll",
            "ppoll", "pselect6", "select", "signalfd", "signalfd4", "timerfd_create",
            "timerfd_gettime", "timerfd_settime",
        ]),
        // The old asynchronous I/O (databases use it) and I/O priorities.
        // Its successor io_uring is *not* here: its operations run inside
        // the kernel without passing this filter, and it has been the
        // way in of many kernel exploits (docker dropped it in 2023).
        allow(&[
            "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit",
            "ioprio_get", "ioprio_set",
        ]),
        // Memory: mapping, protecting, locking (bounded by RLIMIT_MEMLOCK
        // and the memory cgroup) and sealing one's own memory.
        allow(&[
            "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
            "mincore", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mremap", "mseal",
            "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
            "remap_file_pages",
        ]),
        // Processes and threads: exec, exit, wait, fork (plain `fork` and
        // `vfork` cannot make namespaces; `clone` has its own rule below),
        // futexes, scheduling, limits. The engine itself needs execve after
        // the filter is in place, and `--init` needs fork, wait and signals.
        allow(&[
            "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "futex",
            "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list",
            "get_thread_area", "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
            "getrandom", "getrlimit", "getrusage", "getsid", "gettid", "pidfd_open",
            "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall",
            "rseq", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
            "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
            "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
            "sched_yield", "set_robust_list", "set_thread_area", "set_tid_address", "setpgid",
            "setpriority", "setrlimit", "setsid", "sysinfo", "times", "uname", "uretprobe",
            "vfork", "wait4", "waitid",
        ]),
        // A process may always confine itself further: add its own seccomp
        // filter, or a Landlock sandbox.
        allow(&[
            "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "seccomp",
        ]),
        // Users and groups: switching needs CAP_SETUID/CAP_SETGID, which
        // the kernel checks.
        allow(&[
            "getegid", "geteuid", "getgid", "getgroups", "getresgid", "getresuid", "getuid",
            "setfsgid", "setfsuid", "setgid", "setgroups", "setregid", "setresgid", "setresuid",
            "setreuid", "setuid",
        ]),
        // Signals; the PID namespace limits whom they reach.
        allow(&[
            "alarm", "kill", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
            "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
            "rt_tgsigqueueinfo", "sigaltstack", "tgkill", "tkill",
        ]),
        // Reading clocks, sleeping, timers. `adjtimex` and `clock_adjtime`
        // only *read* without CAP_SYS_TIME; setting the clock is below.
        allow(&[
            "adjtimex", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep",
            "getitimer", "gettimeofday", "nanosleep", "setitimer", "time", "timer_create",
            "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
        ]),
        // Sockets once made (making one is `socket`, below): in the
        // container's own network namespace.
        allow(&[
            "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
            "listen", "recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto",
            "setsockopt", "shutdown", "socketpair",
        ]),
        // System V and POSIX IPC: in the container's own IPC namespace.
        allow(&[
            "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend",
            "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop",
            "semtimedop", "shmat", "shmctl", "shmdt", "shmget",
        ]),
        // Only on x86_64: the thread pointer, and per-process segments
        // (old 16-bit code, Wine).
        allow(&["arch_prctl", "modify_ldt"]).on(&["amd64"]),
        // ptrace and reading/writing another process's memory: the kernel
        // still requires the same user and the same PID namespace. Before
        // 4.8 a tracer could change a system call after seccomp had
        // checked it, an escape from the filter: so only from 4.8 on.
        allow(&["process_vm_readv", "process_vm_writev", "ptrace"]).since_kernel("4.8"),
        // ANCHOR: conditions
        // Sockets of every family but two. AF_ALG (38) is the kernel's
        // crypto API as a socket, a large attack surface no container
        // needs; AF_VSOCK (40) talks to the hypervisor or the host
        // directly, past the network namespace. Three rules, because one
        // rule's conditions must all hold: below, between, above.
        allow(&["socket"]).when(0, Op::Less, libc::AF_ALG as u64, 0),
        allow(&["socket"]).when(0, Op::Equal, libc::AF_ALG as u64 + 1, 0),
        allow(&["socket"]).when(0, Op::Greater, libc::AF_VSOCK as u64, 0),
        // personality: only harmless personas. ADDR_NO_RANDOMIZE, for one,
        // turns off address randomization for the next program run, which
        // makes an exploit of it reliable.
        allow(&["personality"]).when(0, Op::Equal, HARMLESS_PERSONALITIES[0], 0),
        allow(&["personality"]).when(0, Op::Equal, HARMLESS_PERSONALITIES[1], 0),
        allow(&["personality"]).when(0, Op::Equal, HARMLESS_PERSONALITIES[2], 0),
        allow(&["personality"]).when(0, Op::Equal, HARMLESS_PERSONALITIES[3], 0),
        allow(&["personality"]).when(0, Op::Equal, HARMLESS_PERSONALITIES[4], 0),
        // clone: threads and processes yes, new namespaces no (unless
        // CAP_SYS_ADMIN). A new *user* namespace would give the process a
        // full set of capabilities there, and with them kernel code (mount,
        // netfilter, …) that is otherwise root's only: the way in of many
        // exploits. The same for unshare and setns, allowed only with
        // CAP_SYS_ADMIN below.
        allow(&["clone"])
            .when(0, Op::MaskedEqual, NEW_NAMESPACE_FLAGS, 0)
            .unless(&["CAP_SYS_ADMIN"]),
        // clone3 passes its flags in memory, where a filter cannot look:
        // ENOSYS makes glibc fall back to clone, which the rule above checks.
        fail(&["clone3"], libc::ENOSYS).unless(&["CAP_SYS_ADMIN"]),
        // ANCHOR_END: conditions
        // CAP_SYS_ADMIN, "the new root": mounts, namespaces, bpf, perf,
        // hostnames, the kernel log. The kernel checks the capability too;
        // the filter keeps its code out of reach altogether.
        allow(&[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount2", "unshare",
        ])
        .only_with(&["CAP_SYS_ADMIN"]),
        // The rest is allowed only with the capability that the kernel would
        // ask for anyway: one group per capability.
        // Opening a file by its handle walks around the container's root:
        // the "shocker" escape of 2014.
        allow(&["open_by_handle_at"]).only_with(&["CAP_DAC_READ_SEARCH"]),
        allow(&["reboot"]).only_with(&["CAP_SYS_BOOT"]),
        allow(&["chroot"]).only_with(&["CAP_SYS_CHROOT"]),
        allow(&["delete_module", "finit_module", "init_module"]).only_with(&["CAP_SYS_MODULE"]),
        allow(&["acct"]).only_with(&["CAP_SYS_PACCT"]),
        // Comparing or taking another process's files, or advising on its
        // memory: reaching into another process, as ptrace does.
        allow(&[
            "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
            "ptrace",
        ])
        .only_with(&["CAP_SYS_PTRACE"]),
        // x86 I/O ports: the hardware itself.
        allow(&["ioperm", "iopl"]).only_with(&["CAP_SYS_RAWIO"]),
        // The clock is not namespaced: setting it sets the host's.
        allow(&["clock_settime", "settimeofday"]).only_with(&["CAP_SYS_TIME"]),
        allow(&["vhangup"]).only_with(&["CAP_SYS_TTY_CONFIG"]),
        // NUMA memory placement (which memory node pages live on): a say
        // over the machine's memory that the kernel also leaves to
        // CAP_SYS_NICE.
        allow(&[
            "get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
        ])
        .only_with(&["CAP_SYS_NICE"]),
        // The kernel log shows kernel addresses, which exploits need.
        allow(&["syslog"]).only_with(&["CAP_SYSLOG"]),
        allow(&["bpf"]).only_with(&["CAP_BPF"]),
        allow(&["perf_event_open"]).only_with(&["CAP_PERFMON"]),
        // ANCHOR: never
        // Never allowed (listed nowhere above), among others: the kernel's
        // keyrings (add_key, keyctl, request_key: keys belong to a uid, and
        // a container without a user namespace of its own is uid 0 like the
        // host's root: it would read and overwrite the host root's keys),
        // io_uring_*, userfaultfd (pauses the kernel on a page fault, the
        // classic tool to win a race in an exploit), kexec_*, swapon and
        // swapoff, pivot_root, and obsolete calls (uselib, ustat, sysfs,
        // _sysctl, nfsservctl).
    ];
    Profile {
        default_action: Some(Action::Errno),
        default_errno_ret: Some(libc::EPERM as u32),
        // Native ABIs only: a 32-bit call from an x86_64 process (int 0x80)
        // uses other numbers, and docker's rule for `socket` does not stop
        // its `socketcall`. No sub-architectures: such a call kills the
        // process (see `seccomp`).
        architectures: Vec::new(),
        arch_map: vec![
            ArchGroup {
                architecture: "SCMP_ARCH_X86_64".into(),
                sub_architectures: Vec::new(),
            },
            ArchGroup {
                architecture: "SCMP_ARCH_AARCH64".into(),
                sub_architectures: Vec::new(),
            },
        ],
        syscalls,
    }
    // ANCHOR_END: never
}
// ANCHOR_END: default

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities;

    fn target(capabilities: u64) -> Target {
        Target {
            capabilities,
            arch: "amd64",
            kernel: (6, 1),
        }
    }

    fn allowed_names(profile: &Profile, target: &Target) -> Vec<String> {
        let mut names: Vec<String> = profile
            .select(target)
            .into_iter()
            .filter(|r| r.action == Action::Allow)
            .flat_map(|r| r.names().map(String::from).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn the_default_is_a_valid_profile_that_survives_json() {
        let profile = default_profile();
        profile.check().unwrap();
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(Profile::from_json(&json).unwrap(), profile);
    }

    #[test]
    fn no_name_is_listed_twice_unconditionally() {
        let profile = default_profile();
        let mut seen = std::collections::BTreeSet::new();
        for rule in profile
            .syscalls
            .iter()
            .filter(|r| r.includes.is_empty() && r.args.is_empty())
        {
            for name in rule.names() {
                assert!(seen.insert(name), "{name} listed twice");
            }
        }
    }

    #[test]
    fn capabilities_open_their_groups() {
        let profile = default_profile();
        let default = allowed_names(&profile, &target(capabilities::default_mask()));
        for denied in [
            "keyctl",
            "add_key",
            "request_key",
            "io_uring_setup",
            "userfaultfd",
            "bpf",
            "perf_event_open",
            "unshare",
            "mount",
            "setns",
            "kcmp",
            "pidfd_getfd",
            "clone3",
            "open_by_handle_at",
            "settimeofday",
        ] {
            assert!(
                !default.contains(&denied.to_string()),
                "{denied} allowed by default"
            );
        }
        // docker's default capabilities include CAP_SYS_CHROOT.
        assert!(default.contains(&"chroot".to_string()));
        assert!(default.contains(&"ptrace".to_string()));

        let ptrace = 1 << 19;
        let with_ptrace = allowed_names(&profile, &target(capabilities::default_mask() | ptrace));
        assert!(with_ptrace.contains(&"kcmp".to_string()));
        assert!(with_ptrace.contains(&"pidfd_getfd".to_string()));

        let admin = 1 << 21;
        let with_admin = allowed_names(&profile, &target(capabilities::default_mask() | admin));
        for name in [
            "unshare",
            "mount",
            "bpf",
            "perf_event_open",
            "clone3",
            "setns",
        ] {
            assert!(with_admin.contains(&name.to_string()), "{name}");
        }
        // With CAP_SYS_ADMIN, clone3's ENOSYS rule and clone's condition go.
        let rules = profile.select(&target(capabilities::default_mask() | admin));
        assert!(!rules.iter().any(|r| r.action == Action::Errno));
        assert!(!rules
            .iter()
            .any(|r| r.names().any(|n| n == "clone") && !r.args.is_empty()));

        let bpf = 1 << 39;
        let with_bpf = allowed_names(&profile, &target(capabilities::default_mask() | bpf));
        assert!(with_bpf.contains(&"bpf".to_string()));
        assert!(!with_bpf.contains(&"perf_event_open".to_string()));
    }

    #[test]
    fn includes_and_excludes_follow_docker() {
        let json = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["b"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x86"]}},
                {"names": ["c"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
                {"names": ["d"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}},
                {"names": ["e"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}},
                {"names": ["f"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.2"}},
                {"names": ["g"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.10"}},
                {"names": ["h"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "6.1"}},
                {"name": "i", "action": "SCMP_ACT_ALLOW", "includes": {}},
                {"names": ["j"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_NO_SUCH_THING"]}}
            ]
        });
        let profile = Profile::from_json(&json).unwrap();
        let chown_only = target(1);
        assert_eq!(allowed_names(&profile, &chown_only), ["b", "g", "i"]);
        let admin_and_chown = target(1 | 1 << 21);
        assert_eq!(
            allowed_names(&profile, &admin_and_chown),
            ["b", "d", "g", "i"]
        );
        let nothing = target(0);
        assert_eq!(allowed_names(&profile, &nothing), ["b", "e", "g", "i"]);
        let arm = Target {
            arch: "arm64",
            ..nothing
        };
        assert_eq!(allowed_names(&profile, &arm), ["a", "c", "e", "g", "i"]);
    }

    #[test]
    fn malformed_profiles_are_refused() {
        let bad = [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_BOGUS"}),
                "SCMP_ACT_BOGUS",
            ),
            (
                serde_json::json!({"syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW"}]}),
                "defaultAction",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}),
                "no names",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "name": "y", "action": "SCMP_ACT_ALLOW"}]}),
                "both name and names",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
                "index 6",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
                "SCMP_CMP_ABOUT",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
                "errnoRet",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}),
                "minKernel",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}),
                "SCMP_ARCH_Z80",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}),
                "both",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
                "listener",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": "mkdir"}),
                "sequence",
            ),
        ];
        for (json, words) in bad {
            let error = Profile::from_json(&json).expect_err(&json.to_string());
            assert!(error.contains(words), "{error:?} should mention {words:?}");
            assert!(!error.contains('\n'), "{error:?}");
        }
        // Go's nulls are empty lists, and unknown fields are ignored (as docker does).
        let ok = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
            "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": null, "comment": "why"}],
            "flags": []
        });
        Profile::from_json(&ok).unwrap();
        assert!(Profile::from_json(&serde_json::json!({}))
            .unwrap()
            .is_unconfined());
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("5.10-rc1"), Some((5, 10)));
        assert_eq!(parse_kernel("five"), None);
        assert!(kernel_version() >= (3, 0));
    }
}
