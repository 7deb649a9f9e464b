//! Addresses, routes and sysctls, inside and outside: the kernel switches
//! a bridge network needs, how we run `ip` commands, and how we step into
//! a container's network namespace to configure its side.
//!
//! **Two sysctls**, both per network namespace:
//!
//! * `net.ipv4.ip_forward=1`: without it the host drops every packet that
//!   is not addressed to itself, so nothing a container sends ever leaves
//!   the bridge for the outside world (docker turns it on too);
//! * `net.ipv4.conf.BRIDGE.route_localnet=1`: a connection to
//!   `127.0.0.1:8080` that iptables redirects (DNAT) to `172.17.0.2:80`
//!   still has the source address `127.0.0.1`, and the kernel refuses to
//!   route a packet from `127.0.0.0/8` out of a real interface ("martian").
//!   This switch allows it on the bridge; a MASQUERADE rule
//!   ([`crate::nat`]) then gives the packet the bridge's own address.
//!
//! **`ip -batch -`**: each `ip` command is a process of its own (about a
//! millisecond to start). `ip -batch -` reads many commands on its
//! standard input and runs them in one process, stopping at the first
//! that fails. `--explain` shows them one by one, as you would type them.
//!
//! **The container's side** ([`in_namespace_of`]): its interface lives in
//! its own network namespace, where the host's `ip` cannot see it. A
//! process can *move* into another network namespace with `setns(2)`,
//! given the namespace as a file: `/proc/PID/ns/net`. We move in, run
//! `ip -batch -` there (a child process inherits its parent's namespaces),
//! and move back out: that is what `nsenter --net=/proc/PID/ns/net ip …`
//! does for one command.
//!
//! A subtlety: a network namespace belongs to a *thread*, not a process.
//! `/proc/self/ns/net` names the namespace of the process's main thread;
//! `/proc/thread-self/ns/net` names the calling thread's. The engine has
//! one thread, so they are the same, but we say what we mean: we come back
//! to the namespace of the thread that left. For the same reason we read
//! sysctls through `/proc/sys` (which answers for the calling thread's
//! namespace) and never through `/sys/class/net` (which shows the
//! namespace of whoever mounted `/sys`).

use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Turns on IPv4 forwarding between interfaces, if it is not on already.
pub fn enable_forwarding() -> Result<()> {
    set_sysctl(
        &["net", "ipv4", "ip_forward"],
        "1",
        "let the host forward packets between interfaces (containers <-> outside)",
    )
}

/// Lets packets from `127.0.0.0/8` be routed out of `bridge`, so that a
/// port published on `127.0.0.1` reaches a container (see the module doc).
pub fn enable_route_localnet(bridge: &str) -> Result<()> {
    check_interface_name(bridge)?;
    set_sysctl(
        &["net", "ipv4", "conf", bridge, "route_localnet"],
        "1",
        &format!("let connections to 127.0.0.1 be redirected into the containers of {bridge}"),
    )
}

/// Writes `value` into the sysctl named by `parts` unless it holds that
/// value already.
fn set_sysctl(parts: &[&str], value: &str, why: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(parts.join("/"));
    if std::fs::read_to_string(&path).is_ok_and(|now| now.trim() == value) {
        return Ok(());
    }
    // `sysctl` also accepts `/` between the parts: needed when an
    // interface name contains a dot.
    let separator = if parts.iter().any(|p| p.contains('.')) {
        "/"
    } else {
        "."
    };
    let command = format!("sysctl -w {}={value}", parts.join(separator));
    explain::step(why, Some(&command));
    std::fs::write(&path, value).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => " — run as root (sudo)",
            std::io::ErrorKind::NotFound => " — is the interface there? (ip link show)",
            _ => " — is /proc/sys read-only here (inside a container)?",
        };
        Error::new(format!("{command}: {e}{hint}"))
    })
}

// ANCHOR: in_namespace_of
/// Runs `f` inside the network namespace of process `pid`, then comes back
/// to the calling thread's own namespace, whether `f` succeeded or not.
pub fn in_namespace_of<T>(pid: Pid, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let home_path = "/proc/thread-self/ns/net";
    let home = std::fs::File::open(home_path)
        .map_err(|e| Error::new(format!("open {home_path}: {e} — is /proc mounted?")))?;
    let there_path = format!("/proc/{pid}/ns/net");
    let there = std::fs::File::open(&there_path).map_err(|e| {
        Error::new(format!(
            "open {there_path}: {e} — the container's process {pid} is gone (did it exit?)"
        ))
    })?;
    nix::sched::setns(&there, CloneFlags::CLONE_NEWNET).map_err(|e| {
        let hint = if e == nix::errno::Errno::EPERM {
            " — run as root (sudo)"
        } else {
            ""
        };
        Error::new(format!("setns into {there_path}: {e}{hint}"))
    })?;
    // Coming back is done by a guard, so it happens however `f` ends
    // (an error, or even a panic).
    let _back = GoBack {
        home,
        from: there_path,
    };
    f()
}

/// Moves the calling thread back into its network namespace when dropped.
struct GoBack {
    home: std::fs::File,
    from: String,
}

impl Drop for GoBack {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::setns(&self.home, CloneFlags::CLONE_NEWNET) {
            // Going on would configure the host's network from inside the
            // container's namespace: stop here.
            eprintln!(
                "crabbox: cannot return from {} to the engine's network namespace: {e}; stopping",
                self.from
            );
            std::process::abort();
        }
    }
}
// ANCHOR_END: in_namespace_of

// ANCHOR: run_ip_batch
/// Runs `ip` commands (each given without the leading `ip`, with a line
/// saying why) in one `ip -batch -` process. `narration_prefix` goes
/// before `ip` in `--explain`: `nsenter --net=/proc/PID/ns/net ` for
/// commands run inside a container's namespace, or nothing.
pub fn run_ip_batch(commands: &[(String, String)], narration_prefix: &str) -> Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    for (why, command) in commands {
        explain::step(why, Some(&format!("{narration_prefix}ip {command}")));
    }
    let ip = program("ip", "iproute2")?;
    let mut script = String::new();
    for (_, command) in commands {
        if command.contains(['\n', '\r', '#', '\\', '"', '\'']) {
            return Err(Error::new(format!(
                "refusing to run `ip {command}`: unexpected characters"
            )));
        }
        script.push_str(command);
        script.push('\n');
    }
    let mut child = Command::new(&ip)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("run {}: {e}", ip.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means `ip` stopped early; its stderr says why.
        let _ = stdin.write_all(script.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::new(format!("run {}: {e}", ip.display())))?;
    if output.status.success() {
        return Ok(());
    }
    Err(ip_error(
        commands,
        narration_prefix,
        &String::from_utf8_lossy(&output.stderr),
    ))
}
// ANCHOR_END: run_ip_batch

/// One line naming the `ip` command that failed (batch mode ends its
/// complaint with `Command failed -:N`, N counting from 1), what `ip`
/// said, and what to do.
fn ip_error(commands: &[(String, String)], prefix: &str, stderr: &str) -> Error {
    let failed = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("Command failed -:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .and_then(|n| commands.get(n.checked_sub(1)?))
        .map_or("-batch -", |(_, command)| command.as_str());
    let said: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Command failed"))
        .collect();
    let said = said.join("; ");
    let hint = if said.contains("Operation not permitted") {
        " — run as root (sudo)"
    } else if said.contains("File exists") {
        " — something by that name or address is there already (see `ip link` / `ip addr`)"
    } else if said.contains("Cannot find device") {
        " — that interface is gone (see `ip link`)"
    } else if said.contains("Unknown device type") {
        " — this kernel lacks bridge/veth support (modprobe bridge veth)"
    } else {
        ""
    };
    Error::new(format!("{prefix}ip {failed}: {said}{hint}"))
}

/// Where the tool `name` is: on `PATH`, or in `/usr/sbin` or `/sbin`
/// (which a plain user's `PATH` often lacks). Missing: one error naming
/// the Debian package that brings it.
pub fn program(name: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::new(format!(
                "`{name}` is not installed: bridge networking needs it (install the {package} package, e.g. apt-get install {package})"
            ))
        })
}

/// Refuses an interface name the kernel would refuse, or that could smuggle
/// something into a command line or a path: 1 to 15 characters from
/// letters, digits, `-`, `_` and `.`.
pub fn check_interface_name(name: &str) -> Result<()> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::new(format!(
            "invalid interface name {name:?}: use 1 to 15 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A network record for tests: bridge `bridge`, subnet `10.SECOND.THIRD.0/24`
    /// (each test module its own `second`, so tests never share a range).
    pub(crate) fn test_network(
        bridge: &str,
        second: u8,
        third: u8,
        internal: bool,
    ) -> crate::network::Network {
        use std::net::Ipv4Addr;
        crate::network::Network {
            name: format!("net-{bridge}"),
            id: format!("{third:064x}"),
            driver: "bridge".into(),
            bridge: bridge.into(),
            subnet: crate::subnet::Cidr {
                addr: Ipv4Addr::new(10, second, third, 0),
                prefix: 24,
            },
            gateway: Ipv4Addr::new(10, second, third, 1),
            internal,
            created: "2024-01-01T00:00:00Z".into(),
            endpoints: Default::default(),
        }
    }

    /// Is this test run as root? If not, say it is skipped, unless
    /// CRABBOX_REQUIRE_PRIVILEGED says skipping is a failure.
    pub(crate) fn root_or_skip() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("CRABBOX_REQUIRE_PRIVILEGED").is_none(),
            "needs root, and CRABBOX_REQUIRE_PRIVILEGED is set"
        );
        eprintln!("skipped: needs root");
        false
    }

    fn namespace_of(path: &str) -> std::path::PathBuf {
        std::fs::read_link(path).unwrap()
    }

    /// Runs `f` on a new thread that first moves into a new, empty network
    /// namespace of its own: whatever `f` changes dies with that thread.
    pub(crate) fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let handle = std::thread::spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let ours = namespace_of("/proc/thread-self/ns/net");
            assert_ne!(
                ours,
                namespace_of("/proc/self/ns/net"),
                "not in a namespace of our own"
            );
            let result = f();
            assert_eq!(
                namespace_of("/proc/thread-self/ns/net"),
                ours,
                "the test thread left its namespace"
            );
            result
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// A process sleeping in a network namespace of its own (a stand-in
    /// for a container), killed when dropped.
    pub(crate) struct Sleeper(pub std::process::Child);

    impl Sleeper {
        pub(crate) fn start() -> Sleeper {
            use std::os::unix::process::CommandExt;
            let mut command = Command::new("sleep");
            command.arg("10");
            // SAFETY: unshare is async-signal-safe; nothing else runs here.
            unsafe {
                command.pre_exec(|| {
                    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
                });
            }
            Sleeper(command.spawn().expect("spawn sleep"))
        }

        pub(crate) fn pid(&self) -> Pid {
            Pid::from_raw(self.0.id() as i32)
        }

        /// Runs a command inside its namespace, as `nsenter` does: its
        /// output, or a panic with its stderr.
        pub(crate) fn run(&self, args: &[&str]) -> String {
            let output = Command::new("nsenter")
                .arg(format!("--net=/proc/{}/ns/net", self.0.id()))
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn read(path: &str) -> String {
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    #[test]
    fn forwarding_and_route_localnet_in_a_namespace_of_our_own() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            enable_forwarding().unwrap();
            assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), "1");
            enable_forwarding().unwrap();
            run_ip_batch(
                &[("a bridge".into(), "link add cbtest0 type bridge".into())],
                "",
            )
            .unwrap();
            enable_route_localnet("cbtest0").unwrap();
            assert_eq!(read("/proc/sys/net/ipv4/conf/cbtest0/route_localnet"), "1");
        });
    }

    #[test]
    fn in_namespace_of_comes_back_also_on_error() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let sleeper = Sleeper::start();
            let home = namespace_of("/proc/thread-self/ns/net");
            let there = namespace_of(&format!("/proc/{}/ns/net", sleeper.pid()));
            assert_ne!(home, there);
            let seen = in_namespace_of(sleeper.pid(), || {
                Ok(namespace_of("/proc/thread-self/ns/net"))
            })
            .unwrap();
            assert_eq!(seen, there);
            assert_eq!(namespace_of("/proc/thread-self/ns/net"), home);
            let failed: Result<()> =
                in_namespace_of(sleeper.pid(), || Err(Error::new("on purpose")));
            assert_eq!(failed.unwrap_err().message(), "on purpose");
            assert_eq!(namespace_of("/proc/thread-self/ns/net"), home);
            let pid = sleeper.pid();
            let panicked = std::panic::catch_unwind(move || {
                in_namespace_of(pid, || -> Result<()> { panic!("a panic on purpose") })
            });
            assert!(panicked.is_err());
            assert_eq!(namespace_of("/proc/thread-self/ns/net"), home);
        });
    }

    #[test]
    fn a_failing_ip_command_is_named_in_one_line() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            let err = run_ip_batch(
                &[
                    ("ok".into(), "link set lo up".into()),
                    ("fails".into(), "link del cbnothere".into()),
                ],
                "",
            )
            .unwrap_err();
            let message = err.message();
            assert!(message.starts_with("ip link del cbnothere: "), "{message}");
            assert!(message.contains("Cannot find device"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        });
    }

    #[test]
    fn interface_names_are_checked() {
        for good in ["crabbox0", "cb-0123456789a", "veth1234567", "eth0", "br.1"] {
            check_interface_name(good).unwrap();
        }
        for bad in [
            "",
            "a b",
            "x/y",
            "..",
            "abcdefghijklmnop",
            "eth0\nlink del",
            "é",
        ] {
            assert!(check_interface_name(bad).is_err(), "{bad:?}");
        }
    }
}
