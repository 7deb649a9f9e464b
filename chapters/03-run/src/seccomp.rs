//! seccomp: a filter on system calls, compiled to BPF and given to the
//! kernel as the container's last step before `execve`.
//!
//! A seccomp filter is a small program in classic BPF that the kernel runs
//! on every system call of the process, before the call does anything. It
//! sees the architecture, the call's number and its six arguments (never
//! memory they point to), and answers: allow, fail with an errno, kill, …
//! Once installed it can never be removed, only made stricter by another
//! filter, and it is inherited by every child and kept across `execve`.
//! Loading one needs no_new_privs (or CAP_SYS_ADMIN), which is why it
//! comes after `capabilities::set_no_new_privs`.
//!
//! Which calls to allow is data: the profile (see `seccomp_profile`, in
//! docker's JSON format). This module turns the rules that apply to one
//! container into a filter and loads it:
//!
//! * a name becomes a number **per architecture** (`open` is 2 on x86_64
//!   and does not exist on aarch64);
//! * each rule becomes its action (with its own errno), and its argument
//!   conditions become comparisons;
//! * a call made with another ABI than the native one (a 32-bit `int
//!   0x80` from an x86_64 process: other numbers, and `socket` hidden in
//!   `socketcall`) **kills the process**. Docker also allows the 32-bit
//!   x86 ABI on x86_64 (and 32-bit arm on aarch64), with the same profile
//!   resolved to their numbers; we choose the simpler, safer rule: one ABI,
//!   the native one (a profile's `archMap` sub-architectures are read, and
//!   not used).
//!
//! **Why the `libseccomp` crate.** It binds Debian's libseccomp, the
//! library runc (and so docker) use: it knows every call's number on every
//! architecture, gives each rule its own action and errno, and implements
//! all of docker's comparisons; the BPF it generates is the one docker's
//! containers get. `seccompiler` (pure Rust, from Firecracker) would save
//! the C dependency but has one match action per filter and no table of
//! names: we would have to write both. The cost is the Debian packages
//! `libseccomp-dev` and `pkg-config` at build time (see `scripts/setup`).
//!
//! **What it costs a container.** Building the default filter (about 330
//! rules) and generating its BPF takes 2 to 3 ms, half the rest of a
//! container's start: so the engine compiles it before the container
//! exists and keeps the program in `/run/crabbox/seccomp`, named by the
//! sha256 of all it depends on ([`prepare`]); the next container with the
//! same profile and capabilities only reads it and loads it (a single
//! `prctl`, in [`install`]). Calls the filter always allows cost almost
//! nothing afterwards: the kernel remembers them per call number.

use crate::seccomp_profile::{default_profile, Action, Op, Profile, Rule, Target};
use crate::security::{SeccompChoice, Security};
use ch01_images::explain;
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use std::collections::{BTreeMap, BTreeSet};

/// Calls newer than the libseccomp some distributions ship (Debian 12's
/// does not know `statmount`, `mseal` or later ones): libseccomp cannot
/// resolve their names, so we give their numbers, which since Linux 5.1 are the same on x86_64
/// and aarch64. Without this they would fail with EPERM, and a new glibc
/// that tries them first would not fall back.
const NEWER_SYSCALLS: [(&str, i32); 16] = [
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
];

/// The number of `name` on this machine's architecture, if it has one.
fn resolve(name: &str) -> Option<i32> {
    if let Ok(call) = ScmpSyscall::from_name(name) {
        // Negative: a name libseccomp knows, but on other architectures.
        let number = call.as_raw_syscall();
        return (number >= 0).then_some(number);
    }
    if cfg!(target_arch = "x86_64") && name == "uretprobe" {
        return Some(335);
    }
    NEWER_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, number)| *number)
}

/// A profile's action, as libseccomp takes it.
fn scmp_action(action: Action, errno: Option<u32>) -> ScmpAction {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    match action {
        Action::Allow => ScmpAction::Allow,
        Action::Errno => ScmpAction::Errno(errno as i32),
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Trace => ScmpAction::Trace(errno as u16),
        Action::Log => ScmpAction::Log,
        // Refused by `Profile::check`; never reached.
        Action::Notify => ScmpAction::KillProcess,
    }
}

/// A condition on one argument, as libseccomp takes it.
fn comparison(arg: &crate::seccomp_profile::Arg) -> ScmpArgCompare {
    let (op, datum) = match arg.op {
        Op::NotEqual => (ScmpCompareOp::NotEqual, arg.value),
        Op::Less => (ScmpCompareOp::Less, arg.value),
        Op::LessOrEqual => (ScmpCompareOp::LessOrEqual, arg.value),
        Op::Equal => (ScmpCompareOp::Equal, arg.value),
        Op::GreaterOrEqual => (ScmpCompareOp::GreaterEqual, arg.value),
        Op::Greater => (ScmpCompareOp::Greater, arg.value),
        Op::MaskedEqual => (ScmpCompareOp::MaskedEqual(arg.value), arg.value_two),
    };
    ScmpArgCompare::new(arg.index, op, datum)
}

/// A filter ready to load, and what it does, for `--explain`.
pub struct Filter {
    context: ScmpFilterContext,
    /// Calls allowed whatever their arguments.
    pub allowed: BTreeSet<i32>,
    /// Calls allowed only with some arguments, by name.
    pub conditional: BTreeSet<String>,
    /// Calls with another action than allow or the default, by name.
    pub special: BTreeMap<String, ScmpAction>,
    /// The action for every other call.
    pub default: ScmpAction,
}

// ANCHOR: compile
/// Compiles the rules of `profile` that apply to `target` into a filter
/// for the native architecture. `None`: the profile asks for no filter.
pub fn compile(profile: &Profile, target: &Target) -> Result<Option<Filter>, String> {
    let Some(default_action) = profile.default_action else {
        return Ok(None);
    };
    let default = scmp_action(default_action, profile.default_errno_ret);
    let mut context = ScmpFilterContext::new(default).map_err(|e| format!("seccomp_init: {e}"))?;
    // Only the native architecture is in the filter; any other ABI's call
    // is killed rather than numbered wrongly.
    context
        .set_act_badarch(ScmpAction::KillProcess)
        .map_err(|e| format!("seccomp: {e}"))?;
    let mut filter = Filter {
        context,
        allowed: BTreeSet::new(),
        conditional: BTreeSet::new(),
        special: BTreeMap::new(),
        default,
    };
    for rule in profile.select(target) {
        let action = scmp_action(rule.action, rule.errno_ret);
        // libseccomp refuses a rule that changes nothing (so does runc).
        if action == default {
            continue;
        }
        for name in rule.names() {
            // A name this architecture does not have: docker skips it too.
            let Some(number) = resolve(name) else {
                continue;
            };
            filter.add(number, name, action, rule)?;
        }
    }
    Ok(Some(filter))
}
// ANCHOR_END: compile

impl Filter {
    fn add(
        &mut self,
        number: i32,
        name: &str,
        action: ScmpAction,
        rule: &Rule,
    ) -> Result<(), String> {
        let call = ScmpSyscall::from(number);
        let failed = |e: libseccomp::error::SeccompError| format!("seccomp rule for {name}: {e}");
        let conditions: Vec<ScmpArgCompare> = rule.args.iter().map(comparison).collect();
        if conditions.is_empty() {
            self.context.add_rule(action, call).map_err(failed)?;
        } else if has_repeated_index(rule) {
            // Two conditions on one argument cannot both hold in one rule
            // (`x == 1 && x == 2`): like runc, each becomes its own rule.
            for condition in conditions {
                self.context
                    .add_rule_conditional(action, call, &[condition])
                    .map_err(failed)?;
            }
        } else {
            self.context
                .add_rule_conditional(action, call, &conditions)
                .map_err(failed)?;
        }
        match action {
            ScmpAction::Allow if rule.args.is_empty() => {
                self.allowed.insert(number);
            }
            ScmpAction::Allow => {
                self.conditional.insert(name.to_string());
            }
            _ => {
                self.special.insert(name.to_string(), action);
            }
        }
        Ok(())
    }

    /// The BPF program libseccomp generates for this filter, as bytes.
    pub fn export(&self) -> Result<Vec<u8>, String> {
        let failed = |e: String| format!("generating the seccomp filter: {e}");
        let name = std::ffi::CString::new("seccomp-bpf").expect("no NUL");
        // SAFETY: a NUL-terminated name and integer flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(failed(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: a new descriptor that nothing else owns.
        let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        self.context
            .export_bpf(&file)
            .map_err(|e| failed(e.to_string()))?;
        let mut program = Vec::new();
        std::io::Seek::rewind(&mut file)
            .and_then(|()| std::io::Read::read_to_end(&mut file, &mut program))
            .map_err(|e| failed(e.to_string()))?;
        Ok(program)
    }

    /// What the filter does, in one line: "306 system calls allowed; …;
    /// anything else: fails with EPERM".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.allowed.is_empty() {
            parts.push(format!("{} system calls allowed", self.allowed.len()));
        }
        let conditional: Vec<&str> = self
            .conditional
            .iter()
            .filter(|name| resolve(name).is_some_and(|n| !self.allowed.contains(&n)))
            .map(String::as_str)
            .collect();
        if !conditional.is_empty() {
            parts.push(format!(
                "{} only with some arguments ({})",
                conditional.len(),
                conditional.join(", ")
            ));
        }
        let mut by_action: Vec<(ScmpAction, Vec<&str>)> = Vec::new();
        for (name, action) in &self.special {
            match by_action.iter_mut().find(|(a, _)| a == action) {
                Some((_, names)) => names.push(name),
                None => by_action.push((*action, vec![name])),
            }
        }
        for (action, names) in by_action {
            parts.push(format!("{}: {}", names.join(", "), describe(action)));
        }
        parts.push(format!("anything else: {}", describe(self.default)));
        parts.join("; ")
    }
}

/// Does some argument have two conditions?
fn has_repeated_index(rule: &Rule) -> bool {
    let mut seen = [false; 6];
    rule.args.iter().any(|arg| {
        let index = arg.index as usize;
        std::mem::replace(&mut seen[index], true)
    })
}

/// An action, as a learner would say it.
fn describe(action: ScmpAction) -> String {
    match action {
        ScmpAction::Allow => "allowed".into(),
        ScmpAction::Errno(e) => format!("fails with {:?}", nix::errno::Errno::from_raw(e)),
        ScmpAction::KillProcess => "kills the process".into(),
        ScmpAction::KillThread => "kills the thread".into(),
        ScmpAction::Trap => "sends SIGSYS".into(),
        ScmpAction::Trace(_) => "stops for a tracer".into(),
        ScmpAction::Log => "allowed and logged".into(),
        _ => format!("{action:?}"),
    }
}

/// The profile a container's choice stands for (`None`: unconfined).
fn profile_for(choice: &SeccompChoice) -> Result<Option<Profile>, String> {
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::Default => Ok(Some(default_profile())),
        SeccompChoice::Profile(json) => Profile::from_json(json).map(Some),
    }
}

// ANCHOR: install
/// A container's filter, compiled: the classic BPF program the kernel
/// takes (8 bytes an instruction), or `None` for no filter.
pub struct Prepared {
    program: Option<Vec<u8>>,
    /// What `--explain` says about it.
    explanation: String,
}

/// Where compiled filters are kept between runs: runtime state, on the
/// tmpfs `/run` (gone at reboot), readable by root alone.
const CACHE: &str = "/run/crabbox/seccomp";

/// Compiles the container's filter, in the engine, before the container
/// exists. Compiling the default profile (about 330 rules, through
/// libseccomp) takes 2 to 3 ms, as much as half of the rest of a
/// container's start; the same profile and capabilities always give the
/// same program, so it is compiled once and kept in `CACHE`, named by
/// the sha256 of everything it depends on.
pub fn prepare(security: &Security) -> Result<Prepared, String> {
    let Some(profile) = profile_for(&security.seccomp)? else {
        return Ok(Prepared {
            program: None,
            explanation: "no seccomp filter (seccomp=unconfined or --privileged): every system call reaches the kernel".into(),
        });
    };
    let key = cache_key(security, &profile);
    let cached = std::path::Path::new(CACHE).join(format!("{key}.bpf"));
    if !explain::enabled() {
        if let Ok(program) = std::fs::read(&cached) {
            if !program.is_empty() && program.len() % 8 == 0 {
                return Ok(Prepared {
                    program: Some(program),
                    explanation: String::new(),
                });
            }
        }
    }
    let Some(filter) = compile(&profile, &Target::host(security.capabilities))? else {
        return Ok(Prepared {
            program: None,
            explanation:
                "the seccomp profile has no defaultAction and no rules: no filter (as docker)"
                    .into(),
        });
    };
    let program = filter.export()?;
    // A cache that cannot be written only costs time.
    let _ = std::fs::create_dir_all(CACHE).and_then(|()| {
        std::fs::set_permissions(
            "/run/crabbox",
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
    });
    let _ = ch01_images::durable::write_runtime_state(&cached, &program);
    let summary = filter.summary();
    let what = match security.seccomp {
        SeccompChoice::Default => format!(
            "install the seccomp filter, docker's default profile: {summary} \
             (keyrings, new namespaces, mount, bpf, perf_event_open, io_uring, userfaultfd, …)"
        ),
        _ => format!("install the seccomp filter of --security-opt seccomp=FILE: {summary}"),
    };
    Ok(Prepared {
        program: Some(program),
        explanation: format!("{what}; a call of another ABI (32-bit) kills the process"),
    })
}

/// What a compiled filter depends on: the profile chosen, the
/// capabilities (docker's profile opens calls for some), the machine's
/// architecture and kernel, libseccomp's version and this engine's.
fn cache_key(security: &Security, profile: &Profile) -> String {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let key = serde_json::json!({
        "profile": profile,
        "capabilities": security.capabilities,
        "arch": std::env::consts::ARCH,
        "kernel": kernel,
        "libseccomp": version,
        "engine": env!("CARGO_PKG_VERSION"),
    });
    ch01_images::digest::Digest::of(key.to_string().as_bytes())
        .hex()
        .to_string()
}

/// Installs a prepared filter: the last step before `execve`, after
/// no_new_privs (without it, loading a filter needs CAP_SYS_ADMIN).
pub fn install(prepared: &Prepared) -> Result<(), String> {
    if !prepared.explanation.is_empty() {
        explain::step(&prepared.explanation, None);
    }
    let Some(program) = &prepared.program else {
        return Ok(());
    };
    /// The kernel's `struct sock_fprog`: a length and a pointer.
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const u8,
    }
    let fprog = SockFprog {
        len: (program.len() / 8) as libc::c_ushort,
        filter: program.as_ptr(),
    };
    // SAFETY: `fprog` points at `program`, whole 8-byte instructions,
    // alive for the call; the kernel copies them.
    let loaded = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const SockFprog,
        )
    };
    if loaded != 0 {
        return Err(format!(
            "loading the seccomp filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
// ANCHOR_END: install

/// Checks that a profile in docker's JSON format compiles (for docker's
/// default capabilities on this machine), without loading it.
pub fn check_profile(profile: &serde_json::Value) -> Result<(), String> {
    let profile = Profile::from_json(profile)?;
    let target = Target::host(crate::capabilities::default_mask());
    if let Some(filter) = compile(&profile, &target)? {
        // Generating the BPF program is where libseccomp finds the last
        // mistakes (e.g. conflicting rules for one call).
        filter.export()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities;

    fn host(capabilities: u64) -> Target {
        Target::host(capabilities)
    }

    #[test]
    fn names_resolve_on_the_native_architecture() {
        assert_eq!(resolve("read"), Some(libc::SYS_read as i32));
        assert_eq!(resolve("clone3"), Some(libc::SYS_clone3 as i32));
        assert_eq!(resolve("mseal"), Some(462));
        // Only on 32-bit ABIs: no number here.
        assert_eq!(resolve("chown32"), None);
        assert_eq!(resolve("socketcall"), None);
        assert_eq!(resolve("no_such_call"), None);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(resolve("open"), Some(2));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(resolve("open"), None);
    }

    #[test]
    fn the_default_profile_compiles() {
        let filter = compile(&default_profile(), &host(capabilities::default_mask()))
            .unwrap()
            .unwrap();
        let count = filter.allowed.len();
        assert!((280..400).contains(&count), "{count} allowed");
        for denied in [
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "unshare",
            "userfaultfd",
        ] {
            let number = resolve(denied).unwrap();
            assert!(!filter.allowed.contains(&number), "{denied}");
        }
        let conditional: Vec<&str> = filter.conditional.iter().map(String::as_str).collect();
        assert_eq!(conditional, ["clone", "personality", "socket"]);
        assert_eq!(
            filter.special.iter().collect::<Vec<_>>(),
            [(&"clone3".to_string(), &ScmpAction::Errno(libc::ENOSYS))]
        );
        assert_eq!(filter.default, ScmpAction::Errno(libc::EPERM));
        // With every capability: no conditions left, and the ENOSYS rule gone.
        let all = compile(&default_profile(), &host(capabilities::all_mask()))
            .unwrap()
            .unwrap();
        assert!(all.special.is_empty());
        assert!(all.allowed.contains(&resolve("bpf").unwrap()));
        assert!(all.allowed.contains(&resolve("clone").unwrap()));
        assert!(all.summary().contains("system calls allowed"));
    }

    #[test]
    fn docker_format_profiles_compile() {
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "chown32"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"}
                ]},
                {"names": ["socket"], "action": "SCMP_ACT_KILL_PROCESS", "args": [
                    {"index": 0, "value": 40, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 1, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 1}
                ]},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["uname"], "action": "SCMP_ACT_LOG"},
                {"names": ["sync"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}
            ]
        });
        check_profile(&profile).unwrap();
        let parsed = Profile::from_json(&profile).unwrap();
        let filter = compile(&parsed, &host(capabilities::default_mask()))
            .unwrap()
            .unwrap();
        // getpid's rule repeats the default action: skipped.
        assert!(filter.allowed.is_empty());
        assert!(filter.special.contains_key("mkdirat"));
        assert!(!filter.special.contains_key("chown32"));
        let summary = filter.summary();
        assert!(
            summary.contains("mkdir, mkdirat: fails with EACCES")
                && summary.ends_with("anything else: allowed"),
            "{summary}"
        );
    }

    #[test]
    fn no_default_action_and_no_rules_means_no_filter() {
        let profile = Profile::from_json(&serde_json::json!({})).unwrap();
        assert!(compile(&profile, &host(0)).unwrap().is_none());
        check_profile(&serde_json::json!({})).unwrap();
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        let error =
            check_profile(&serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"})).unwrap_err();
        assert!(
            error.contains("SCMP_ACT_NOPE") && !error.contains('\n'),
            "{error}"
        );
    }

    #[test]
    fn repeated_indexes_are_split() {
        let mut rule = Rule::default();
        let arg = |index| crate::seccomp_profile::Arg {
            index,
            value: 1,
            value_two: 0,
            op: Op::Equal,
        };
        rule.args = vec![arg(0), arg(1)];
        assert!(!has_repeated_index(&rule));
        rule.args.push(arg(0));
        assert!(has_repeated_index(&rule));
    }
}
