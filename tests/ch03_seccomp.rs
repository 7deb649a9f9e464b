//! Chapter 03 end to end, the seccomp filter: the
//! system calls docker's default profile denies are denied in a container
//! (and in `exec`), what a program needs still works, and docker's
//! opt-outs (`seccomp=unconfined`, `seccomp=FILE`) change that as in
//! docker. Each denied call is shown working without the filter first:
//! the attack, then the defence.
//!
//! The calls are made by a static C probe (`tests/probes/syscalls.c`)
//! added to the fixture busybox image with umoci, as `scripts/fixtures`
//! builds the fixtures. All of it needs root.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use support::containers::Setup;
use support::Run;

const BIN: &str = "ch03-run";
const PROBE: &str = "seccomp-probe";

/// The calls docker's default profile denies, with the error they get.
const DENIED: [(&str, &str); 16] = [
    ("keyctl", "DENIED (EPERM)"),
    ("add_key", "DENIED (EPERM)"),
    ("request_key", "DENIED (EPERM)"),
    ("unshare(CLONE_NEWUSER)", "DENIED (EPERM)"),
    ("userns-mount", "DENIED (EPERM)"),
    ("clone(CLONE_NEWUSER)", "DENIED (EPERM)"),
    // ENOSYS, so that glibc falls back to clone, whose flags can be checked.
    ("clone3", "DENIED (ENOSYS)"),
    ("io_uring_setup", "DENIED (EPERM)"),
    ("userfaultfd", "DENIED (EPERM)"),
    ("perf_event_open", "DENIED (EPERM)"),
    ("bpf", "DENIED (EPERM)"),
    ("socket(AF_VSOCK)", "DENIED (EPERM)"),
    ("socket(AF_ALG)", "DENIED (EPERM)"),
    ("personality(ADDR_NO_RANDOMIZE)", "DENIED (EPERM)"),
    ("kcmp", "DENIED (EPERM)"),
    ("pidfd_getfd", "DENIED (EPERM)"),
];

/// Calls every program may make, which must keep working.
const HARMLESS: [&str; 11] = [
    "getpid",
    "fork",
    "socket(AF_INET)",
    "socket(AF_UNIX)",
    "personality(PER_LINUX)",
    "personality(query)",
    "ptrace",
    "process_vm_readv",
    "mknod",
    "chown",
    "mkdir",
];

/// A docker archive of the fixture busybox plus `/bin/syscalls`, built
/// once per test run with umoci (and skopeo, to write the archive).
fn probe_archive() -> &'static PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let fixtures = support::fixtures();
        let work = fixtures
            .dir
            .parent()
            .expect("target")
            .join("crabbox-seccomp-probe");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("syscalls"), support::probes::compile("syscalls")).unwrap();
        let script = format!(
            "set -e; cd {work}; cp -a {oci} oci; \
             umoci unpack --image oci:busybox bundle; \
             install -m 0755 syscalls bundle/rootfs/bin/syscalls; \
             umoci repack --image oci:{PROBE} bundle; \
             skopeo copy -q oci:oci:{PROBE} docker-archive:probe.tar:{PROBE}:latest",
            work = work.display(),
            oci = fixtures.oci_layout().display(),
        );
        let out = support::sh(&script);
        assert_eq!(out.code, 0, "building the probe image: {}", out.stderr);
        work.join("probe.tar")
    })
}

/// A Setup whose engine holds the probe image.
fn setup() -> Setup {
    let setup = Setup::new(BIN);
    let archive = probe_archive().to_str().unwrap().to_string();
    setup.run(&["load", "-i", &archive]).ok();
    setup
}

/// The probe's lines as `name → result`.
fn parse(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|line| {
            let (name, result) = line.split_once(' ')?;
            let known = ["ALLOWED", "DENIED", "KILLED"];
            known
                .iter()
                .any(|k| result.starts_with(k))
                .then(|| (name.to_string(), result.to_string()))
        })
        .collect()
}

/// `run --rm [FLAGS…] PROBE COMMAND…`; asserts success.
fn probe(setup: &Setup, flags: &[&str], command: &[&str]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(PROBE);
    args.extend_from_slice(command);
    setup.run(&args).ok().to_string()
}

/// The `Seccomp:` mode of /proc/self/status in this output.
fn seccomp_mode(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no Seccomp: line in {out}"))
}

#[track_caller]
fn assert_result(results: &BTreeMap<String, String>, name: &str, expected: &str) {
    assert_eq!(
        results.get(name).map(String::as_str),
        Some(expected),
        "{name}: {results:#?}"
    );
}

#[test]
fn the_default_profile_denies_what_docker_denies() {
    if !support::require_root("the_default_profile_denies_what_docker_denies") {
        return;
    }
    let setup = setup();
    let out = probe(
        &setup,
        &[],
        &["sh", "-c", "grep Seccomp /proc/self/status; syscalls"],
    );
    // 2: a filter is in place; exactly one (the engine adds no second).
    assert_eq!(seccomp_mode(&out), "2", "{out}");
    assert!(out.contains("Seccomp_filters:\t1"), "{out}");
    let results = parse(&out);
    for (name, expected) in DENIED {
        assert_result(&results, name, expected);
    }
    for name in HARMLESS {
        assert_result(&results, name, "ALLOWED");
    }
    // A 32-bit call (int 0x80) uses another ABI's numbers: not in the
    // filter, so the process is killed rather than let through.
    #[cfg(target_arch = "x86_64")]
    assert_result(&results, "int80-getpid", "KILLED (SIGSYS)");
}

#[test]
fn unconfined_lets_every_call_through() {
    if !support::require_root("unconfined_lets_every_call_through") {
        return;
    }
    let setup = setup();
    // The attacks, working: this is what the filter stops.
    for flags in [
        &["--security-opt", "seccomp=unconfined"][..],
        &["--privileged"][..],
    ] {
        let out = probe(
            &setup,
            flags,
            &["sh", "-c", "grep Seccomp /proc/self/status; syscalls"],
        );
        assert_eq!(seccomp_mode(&out), "0", "{flags:?}: {out}");
        let results = parse(&out);
        for name in DENIED.iter().map(|(name, _)| *name).chain(HARMLESS) {
            let result = &results[name];
            assert!(result.starts_with("ALLOWED"), "{flags:?} {name}: {result}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_result(&results, "int80-getpid", "ALLOWED");
    }
}

#[test]
fn capabilities_open_the_calls_docker_ties_to_them() {
    if !support::require_root("capabilities_open_the_calls_docker_ties_to_them") {
        return;
    }
    let setup = setup();
    let out = probe(
        &setup,
        &["--cap-add", "SYS_PTRACE"],
        &["syscalls", "kcmp", "pidfd_getfd", "unshare(CLONE_NEWUSER)"],
    );
    let results = parse(&out);
    assert_result(&results, "kcmp", "ALLOWED");
    assert_result(&results, "pidfd_getfd", "ALLOWED");
    assert_result(&results, "unshare(CLONE_NEWUSER)", "DENIED (EPERM)");
    let out = probe(
        &setup,
        &["--cap-add", "SYS_ADMIN"],
        &[
            "syscalls",
            "unshare(CLONE_NEWUSER)",
            "clone3",
            "bpf",
            "keyctl",
        ],
    );
    let results = parse(&out);
    assert_result(&results, "unshare(CLONE_NEWUSER)", "ALLOWED");
    assert_result(&results, "clone3", "ALLOWED");
    assert_result(&results, "bpf", "ALLOWED (EINVAL)");
    // No capability opens the keyrings.
    assert_result(&results, "keyctl", "DENIED (EPERM)");
}

#[test]
fn a_busybox_session_still_works() {
    if !support::require_root("a_busybox_session_still_works") {
        return;
    }
    let setup = setup();
    let script = "echo hello; ls / >/dev/null && echo listed; \
                  touch /tmp/f && chown 65534:65534 /tmp/f && stat -c %u:%g /tmp/f; \
                  mknod /tmp/null c 1 3 && stat -c %F /tmp/null; \
                  ping -c1 -W2 127.0.0.1 >/dev/null && echo pinged; \
                  sleep 0.1 & wait && echo waited";
    let out = probe(&setup, &[], &["sh", "-c", script]);
    for expected in [
        "hello",
        "listed",
        "65534:65534",
        "character special file",
        "pinged",
        "waited",
    ] {
        assert!(out.lines().any(|l| l == expected), "{expected}: {out}");
    }
    // --init: the init forks, waits and forwards signals under the filter.
    let out = probe(
        &setup,
        &["--init"],
        &["sh", "-c", "grep Seccomp: /proc/1/status; echo pid $$"],
    );
    assert_eq!(seccomp_mode(&out), "2", "{out}");
    assert!(out.contains("pid 2"), "{out}");
}

#[test]
fn a_profile_file_in_dockers_format() {
    if !support::require_root("a_profile_file_in_dockers_format") {
        return;
    }
    let setup = setup();
    let dir = support::TempDir::new("seccomp-profile");
    // Everything allowed but mkdir, which fails with EACCES (13): an error
    // root with CAP_DAC_OVERRIDE never gets from the kernel in /tmp.
    let profile = dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "comment": "no new directories"}
            ]
        }"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = probe(
        &setup,
        &["--security-opt", &opt],
        &[
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; mkdir /tmp/d 2>&1; syscalls mkdir keyctl bpf",
        ],
    );
    assert_eq!(seccomp_mode(&out), "2", "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    let results = parse(&out);
    assert_result(&results, "mkdir", "DENIED (EACCES)");
    assert_result(&results, "keyctl", "ALLOWED");
    assert_result(&results, "bpf", "ALLOWED (EINVAL)");
}

#[test]
fn a_malformed_profile_is_refused_before_anything_exists() {
    if !support::require_root("a_malformed_profile_is_refused_before_anything_exists") {
        return;
    }
    let setup = setup();
    let dir = support::TempDir::new("seccomp-bad");
    let cases = [
        ("not-json.json", "{\"defaultAction\": ", "not valid JSON"),
        (
            "bad-action.json",
            r#"{"defaultAction": "SCMP_ACT_MAYBE", "syscalls": []}"#,
            "SCMP_ACT_MAYBE",
        ),
        (
            "bad-op.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}"#,
            "SCMP_CMP_SOMETIMES",
        ),
        (
            "no-names.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
            "no names",
        ),
    ];
    for (file, text, words) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let opt = format!("seccomp={}", path.display());
        for command in ["run", "create"] {
            let out = setup.run(&[command, "--security-opt", &opt, PROBE, "true"]);
            let line = out.fails_with(125);
            assert!(line.contains(words), "{file}: {line}");
            assert!(line.contains(file), "names the file: {line}");
        }
    }
    setup.assert_nothing_left();
}

#[test]
fn exec_gets_the_containers_filter_too() {
    if !support::require_root("exec_gets_the_containers_filter_too") {
        return;
    }
    let setup = setup();
    for (name, flags, mode) in [
        ("filtered", &[][..], "2"),
        ("open", &["--security-opt", "seccomp=unconfined"][..], "0"),
    ] {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.extend([PROBE, "sleep", "300"]);
        setup.run(&args).ok();
        let out = setup.run(&["exec", name, "grep", "Seccomp", "/proc/self/status"]);
        assert_eq!(seccomp_mode(out.ok()), mode, "{name}");
        if mode == "2" {
            assert!(out.stdout.contains("Seccomp_filters:\t1"), "{}", out.stdout);
        }
        let out = setup.run(&[
            "exec",
            name,
            "syscalls",
            "keyctl",
            "personality(ADDR_NO_RANDOMIZE)",
        ]);
        let results = parse(out.ok());
        let expected = if mode == "2" {
            "DENIED (EPERM)"
        } else {
            "ALLOWED"
        };
        assert_result(&results, "keyctl", expected);
        assert_result(&results, "personality(ADDR_NO_RANDOMIZE)", expected);
        setup.run(&["rm", "-f", name]).ok();
    }
}

/// `BIN ARGS` in a new session keyring holding a key `description` =
/// `SECRET`, as the host's root; returns the run and the key's value after.
/// The keyring goes away with the session, so the host keeps nothing.
fn with_host_key(setup: &Setup, description: &str, args: &[&str]) -> (Run, String) {
    let engine = setup.engine.command(BIN, args);
    let script = format!(
        "id=$(keyctl add user {description} SECRET @s) || exit 99; \
         \"$@\"; code=$?; echo \"after: $(keyctl print $id)\" >&2; exit $code"
    );
    let mut command = Command::new("keyctl");
    command
        .args(["session", "-", "sh", "-c", &script, "sh"])
        .arg(engine.get_program())
        .args(engine.get_args())
        .stdin(Stdio::null());
    for (key, value) in engine.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let run = Run::from_output(
        command
            .output()
            .expect("keyctl (scripts/setup installs keyutils)"),
    );
    let after = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("after: "))
        .unwrap_or_else(|| panic!("no value after: {}", run.stderr))
        .to_string();
    (run, after)
}

#[test]
fn the_hosts_keys_are_out_of_reach() {
    if !support::require_root("the_hosts_keys_are_out_of_reach") {
        return;
    }
    let setup = setup();
    let description = format!("crabbox-test-{}", std::process::id());
    // The attack: keys belong to a uid, not to a namespace, so container
    // root reads and overwrites a key of the host's root.
    let (run, after) = with_host_key(
        &setup,
        &description,
        &[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            PROBE,
            "syscalls",
            "host-key",
            &description,
        ],
    );
    let results = parse(&run.stdout);
    assert_result(&results, "host-key-read", "ALLOWED SECRET");
    assert_result(&results, "host-key-write", "ALLOWED");
    assert_eq!(after, "PWNED");
    // The defence: the keyring calls never reach the kernel.
    let (run, after) = with_host_key(
        &setup,
        &description,
        &["run", "--rm", PROBE, "syscalls", "host-key", &description],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let results = parse(&run.stdout);
    assert_result(&results, "host-key-read", "DENIED (EPERM)");
    assert_result(&results, "host-key-write", "DENIED (EPERM)");
    assert_eq!(after, "SECRET");
}
