//! The instructor's tools: `scripts/classroom-registry` (a pull-through
//! cache of Docker Hub for a class) and `scripts/doctor` (is a learner's
//! machine ready?).
//!
//! The cache is tested offline: its upstream is a second local registry
//! serving the fixtures on 127.0.0.1, standing in for Docker Hub; nothing
//! here talks to any host but this machine's loopback (and, for the
//! `--listen 0.0.0.0` test, a network namespace the test owns).
//!
//! The doctor's checks are tested on fake /proc and /sys trees built in a
//! temporary directory (`--proc T/proc --sys T/sys --root T/root`): an old
//! kernel, no overlayfs, each cgroup layout, a route over 172.17.0.0/16, a
//! listener on port 8080… and once on the real machine. Its `--online`
//! checks are never run here.

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::registry::free_port;
use support::{fixtures, require_root, workspace, Engine, Registry, Run, TempDir};

const BIN: &str = "ch06-bridge";

fn script(name: &str) -> PathBuf {
    workspace().join("scripts").join(name)
}

/// Is `tool` installed? Says loudly when not; under CI, a missing tool
/// fails the test instead (scripts/setup installs it).
fn tool(name: &str, package: &str) -> bool {
    let found = Command::new("bash")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed (Debian package {package}; scripts/setup installs it)"
        );
        eprintln!(
            "SKIPPED: {name} is not installed (Debian package {package}): this test did NOT run"
        );
    }
    found
}

// ---------------------------------------------------------------------------
// scripts/classroom-registry
// ---------------------------------------------------------------------------

/// `scripts/classroom-registry ARGS`.
fn classroom(args: &[&str]) -> Run {
    Run::from_output(
        Command::new(script("classroom-registry"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/classroom-registry"),
    )
}

/// A cache started by the script, in a directory of its own. Dropping it
/// (also while a failed test unwinds) stops it with the script, and, should
/// that fail, kills the PID of its pid file, which only this test wrote.
struct Cache {
    dir: TempDir,
    port: u16,
}

impl Cache {
    fn start(upstream: &str) -> (Cache, Run) {
        let cache = Cache {
            dir: TempDir::new("classroom-cache"),
            port: free_port(),
        };
        let listen = cache.addr();
        let run = classroom(&[
            "start",
            "--upstream",
            upstream,
            "--listen",
            &listen,
            "--dir",
            &cache.dir_arg(),
        ]);
        (cache, run)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `scripts/classroom-registry COMMAND ARGS --listen ADDR --dir DIR`.
    fn script(&self, command: &str, args: &[&str]) -> Run {
        let (listen, dir) = (self.addr(), self.dir_arg());
        let mut all = vec![command];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--listen", &listen, "--dir", &dir]);
        classroom(&all)
    }

    fn dir_arg(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("registry.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The blob `digest` is in the cache's own storage.
    fn holds_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
            .exists()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let pid = self.pid();
        let _ = classroom(&["stop", "--dir", &self.dir_arg()]);
        if let Some(pid) = pid.filter(|&pid| is_running(pid)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Is `pid` a live process (not gone, not a zombie waiting for its reaper)?
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z")),
        Err(_) => false,
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Something listens on TCP 127.0.0.1:port.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn busybox(field: &str) -> String {
    fixtures().get("busybox")[field]
        .as_str()
        .unwrap_or_else(|| panic!("fixtures.json: busybox has no {field}"))
        .to_string()
}

/// The manifest digests an engine's store holds.
fn stored_manifests(engine: &Engine) -> Vec<String> {
    let index = std::fs::read(engine.root.join("images/index.json")).expect("images/index.json");
    let index: serde_json::Value = serde_json::from_slice(&index).expect("JSON");
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn assert_pulled_busybox(engine: &Engine) {
    engine.assert_store_consistent();
    assert!(
        stored_manifests(engine).contains(&busybox("digest")),
        "the store does not hold the fixture busybox {}",
        busybox("digest")
    );
}

#[test]
fn cache_serves_a_class_then_works_without_its_upstream_and_refuses_pushes() {
    if !tool("docker-registry", "docker-registry") {
        return;
    }
    // Docker Hub's stand-in: the fixtures, read-only, on loopback.
    let mut upstream = Registry::serve_fixtures(&fixtures().registry_storage());
    let (cache, started) = Cache::start(&format!("http://{}", upstream.addr()));
    started.ok();
    let mirror = format!("http://{}", cache.addr());
    assert!(
        started
            .stdout
            .contains(&format!("export CRABBOX_REGISTRY_MIRROR={mirror}")),
        "start must print the learners' line:\n{}",
        started.stdout
    );
    assert!(
        started
            .stderr
            .contains(&format!("caching http://{}", upstream.addr())),
        "start says what it caches:\n{}",
        started.stderr
    );
    let pid = cache.pid().expect("a pid file in the cache's directory");
    assert!(is_running(pid), "the registry of the pid file runs");

    let status = classroom(&["status", "--dir", &cache.dir_arg()]);
    assert!(
        status
            .ok()
            .contains(&format!("running on {}", cache.addr()))
            && status.stdout.contains(&format!("(pid {pid})")),
        "status: {}",
        status.stdout
    );
    // A second start finds it running and says so (and where).
    let again = classroom(&["start", "--dir", &cache.dir_arg()]);
    again.ok();
    assert!(
        again.stderr.contains("already running") && again.stdout.contains(&mirror),
        "second start:\n{}\n{}",
        again.stdout,
        again.stderr
    );

    // The first learner: a Docker Hub name, through the mirror.
    let first = Engine::new().with_env("CRABBOX_REGISTRY_MIRROR", &mirror);
    first.run(BIN, &["pull", "-q", "busybox"]).ok();
    assert_pulled_busybox(&first);

    // A push to the cache is refused: a pull-through cache is read-only
    // (here to a repository the upstream does not have).
    first
        .run(
            BIN,
            &["tag", "busybox", &format!("{}/class/mine", cache.addr())],
        )
        .ok();
    let push = first.run(BIN, &["push", &format!("{}/class/mine", cache.addr())]);
    let error = push.fails_with(125);
    assert!(
        error.contains(&format!("{} does not take pushes", cache.addr()))
            && error.contains("405")
            && error.contains("read-only or a mirror"),
        "push to the cache: {error}"
    );

    // The cache writes a blob into its storage in the background, just
    // after serving it (distribution 2.8 fetches it from the upstream once
    // more to store it): wait for every part of the image before the
    // upstream goes away.
    let mut parts = vec![busybox("digest"), busybox("config_digest")];
    parts.extend(
        fixtures().get("busybox")["layer_digests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string()),
    );
    wait_until(
        "the cache stored every blob of busybox",
        Duration::from_secs(20),
        || parts.iter().all(|d| cache.holds_blob(d)),
    );

    // Docker Hub is gone (the venue's uplink died): the rest of the class
    // still pulls, from the cache.
    upstream.stop();
    assert!(!listening(upstream.port), "the upstream is stopped");
    let second = Engine::new().with_env("CRABBOX_REGISTRY_MIRROR", &mirror);
    second.run(BIN, &["pull", "-q", "library/busybox"]).ok();
    assert_pulled_busybox(&second);
    // Named directly, as `--insecure-registry HOST:PORT` lets a learner on
    // another machine do (plain HTTP to loopback needs no flag).
    let third = Engine::new();
    third
        .run(
            BIN,
            &["pull", "-q", &format!("{}/library/busybox", cache.addr())],
        )
        .ok();
    assert_pulled_busybox(&third);
    // A push of a cached repository is refused too, and as clearly.
    let target = format!("{}/library/busybox:mine", cache.addr());
    second.run(BIN, &["tag", "busybox", &target]).ok();
    let error = second
        .run(BIN, &["push", &target])
        .fails_with(125)
        .to_string();
    assert!(
        error.contains("does not take pushes") && error.contains("405"),
        "push of a cached repository: {error}"
    );

    // stop: the registry is gone, its port free, its pid file removed; the
    // cached images stay for the next class.
    let stopped = classroom(&["stop", "--dir", &cache.dir_arg()]);
    stopped.ok();
    assert!(
        stopped.stderr.contains(&format!("stopped (pid {pid})")),
        "stop: {}",
        stopped.stderr
    );
    wait_until("the registry exits", Duration::from_secs(10), || {
        !is_running(pid)
    });
    assert!(
        !listening(cache.port),
        "nothing listens on the cache's port after stop"
    );
    assert!(
        !cache.dir.join("registry.pid").exists(),
        "stop removes the pid file"
    );
    assert!(
        parts.iter().all(|d| cache.holds_blob(d)),
        "stop keeps the cache"
    );
    let status = classroom(&["status", "--dir", &cache.dir_arg()]);
    assert_eq!(status.code, 3, "status when stopped: {}", status.stdout);
    assert!(status.stdout.contains("not running"), "{}", status.stdout);

    // The next morning, the uplink still down: docker-registry cannot
    // start as a cache without its upstream (it asks the upstream's /v2/
    // at start), and the script says so, and what to do.
    let upstream_url = format!("http://{}", upstream.addr());
    let error = cache
        .script("start", &["--upstream", &upstream_url])
        .fails_with(1)
        .to_string();
    assert!(
        error.contains(&format!("the upstream {upstream_url} did not answer"))
            && error.contains("start --offline"),
        "restart without the upstream: {error}"
    );
    assert!(
        !cache.dir.join("registry.pid").exists(),
        "no pid file after a failed start"
    );
    // --offline serves what is cached, read-only, as an ordinary registry.
    let offline = cache.script("start", &["--offline"]);
    offline.ok();
    assert!(
        offline
            .stdout
            .contains(&format!("export CRABBOX_REGISTRY_MIRROR={mirror}")),
        "{}",
        offline.stdout
    );
    let offline_pid = cache.pid().expect("a pid file");
    let status = classroom(&["status", "--dir", &cache.dir_arg()]);
    assert!(status.ok().contains("offline"), "status: {}", status.stdout);
    let fourth = Engine::new().with_env("CRABBOX_REGISTRY_MIRROR", &mirror);
    fourth.run(BIN, &["pull", "-q", "busybox"]).ok();
    assert_pulled_busybox(&fourth);
    fourth
        .run(
            BIN,
            &["tag", "busybox", &format!("{}/class/mine", cache.addr())],
        )
        .ok();
    let error = fourth
        .run(BIN, &["push", &format!("{}/class/mine", cache.addr())])
        .fails_with(125)
        .to_string();
    assert!(
        error.contains("does not take pushes"),
        "push offline: {error}"
    );
    // What the cache never saw is not there, and says so.
    let missing = fourth.run(BIN, &["pull", "-q", "layered"]);
    assert!(
        missing.fails_with(125).contains("library/layered"),
        "{}",
        missing.stderr
    );
    classroom(&["stop", "--dir", &cache.dir_arg()]).ok();
    wait_until(
        "the offline registry exits",
        Duration::from_secs(10),
        || !is_running(offline_pid),
    );
    assert!(!listening(cache.port));
}

#[test]
fn cache_on_all_addresses_warns_and_prints_the_insecure_registry_flag() {
    if !require_root("cache_on_all_addresses_warns") || !tool("docker-registry", "docker-registry")
    {
        return;
    }
    // 0.0.0.0 inside a network namespace of the test's own (only `lo` in
    // it): the class-LAN setting, without opening a port on this machine's
    // networks. The registry stays in that namespace after the script
    // returns; `stop` finds it by its pid like any other.
    let netns = Netns::new();
    let dir = TempDir::new("classroom-lan");
    let dir_arg = dir.path().display().to_string();
    let start = Run::from_output(
        netns
            .command(
                script("classroom-registry"),
                &[
                    "start",
                    "--listen",
                    "0.0.0.0:5000",
                    "--dir",
                    &dir_arg,
                    // No upstream here: the namespace has only `lo`.
                    "--offline",
                ],
            )
            .output()
            .expect("nsenter"),
    );
    let stop = || classroom(&["stop", "--dir", &dir_arg]);
    if start.code != 0 {
        stop();
        panic!("start on 0.0.0.0:5000: {}\n{}", start.stdout, start.stderr);
    }
    let pid: i32 = std::fs::read_to_string(dir.join("registry.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        netns.holds(pid),
        "the registry runs in the test's namespace"
    );
    let warned = start
        .stderr
        .lines()
        .any(|l| l.contains("WARNING") && l.contains("0.0.0.0:5000") && l.contains("anyone"));
    let flag = start
        .stdout
        .lines()
        .any(|l| l.trim().starts_with("--insecure-registry ") && l.trim().ends_with(":5000"));
    let mirror = start
        .stdout
        .contains("export CRABBOX_REGISTRY_MIRROR=http://");
    let status = classroom(&["status", "--dir", &dir_arg]);
    stop().ok();
    wait_until("the registry exits", Duration::from_secs(10), || {
        !is_running(pid)
    });
    assert!(
        warned,
        "a warning that anyone on the LAN can pull:\n{}",
        start.stderr
    );
    assert!(flag, "the --insecure-registry line:\n{}", start.stdout);
    assert!(mirror, "the mirror line:\n{}", start.stdout);
    assert!(
        status.stdout.contains("running on 0.0.0.0:5000"),
        "status: {}",
        status.stdout
    );
}

#[test]
fn cache_refuses_bad_settings_and_never_stops_a_stranger() {
    let dir = TempDir::new("classroom-bad");
    let dir_arg = dir.path().display().to_string();

    let bad = classroom(&["start", "--listen", "5000", "--dir", &dir_arg]);
    let error = bad.fails_with(1);
    assert!(error.contains("expected ADDR:PORT"), "{error}");
    let bad = classroom(&["start", "--listen", "127.0.0.1:70000", "--dir", &dir_arg]);
    assert!(bad.fails_with(1).contains("not a port number"));
    let bad = classroom(&[
        "start",
        "--upstream",
        "registry-1.docker.io",
        "--dir",
        &dir_arg,
    ]);
    assert!(bad.fails_with(1).contains("expected a registry's base URL"));
    let usage = classroom(&["restart"]);
    assert_eq!(usage.code, 2, "unknown command: {}", usage.stderr);

    // A port already taken: said before anything starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = classroom(&[
        "start",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--dir",
        &dir_arg,
        "--upstream",
        "http://127.0.0.1:9",
    ]);
    let error = busy.fails_with(1);
    assert!(
        error.contains(&format!("port {port} is already in use")),
        "{error}"
    );

    // An upstream that does not answer: docker-registry gives up at start,
    // and the script says why, in one line, leaving nothing behind.
    let error = classroom(&[
        "start",
        "--upstream",
        &format!("http://127.0.0.1:{}", free_port()),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--dir",
        &dir_arg,
    ])
    .fails_with(1)
    .to_string();
    assert!(
        error.contains("did not answer") && error.contains("connection refused"),
        "{error}"
    );
    assert!(!dir.join("registry.pid").exists());

    // Nothing running: status says so (exit 3), stop is a no-op.
    let status = classroom(&["status", "--dir", &dir_arg]);
    assert_eq!(status.code, 3);
    assert!(status.stdout.contains("not running"));
    classroom(&["stop", "--dir", &dir_arg]).ok();

    // A stale pid file naming some other process (pids are reused): stop
    // must not touch it.
    let mut stranger = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(dir.join("registry.pid"), format!("{}\n", stranger.id())).unwrap();
    let stop = classroom(&["stop", "--dir", &dir_arg]);
    stop.ok();
    let alive = stranger.try_wait().unwrap().is_none();
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(alive, "stop killed a process that is not its registry");
    assert!(stop.stderr.contains("not running"), "{}", stop.stderr);
    assert!(
        !dir.join("registry.pid").exists(),
        "a stale pid file is removed"
    );
}

// ---------------------------------------------------------------------------
// scripts/doctor
// ---------------------------------------------------------------------------

/// An IPv4 address as /proc/net/route writes it (hex, the kernel's byte order).
fn route_hex(addr: [u8; 4]) -> String {
    format!("{:08X}", u32::from_ne_bytes(addr))
}

/// A fake machine: /proc, /sys and an engine root in a temporary
/// directory, healthy until a test spoils one part.
struct FakeHost {
    dir: TempDir,
}

impl FakeHost {
    fn new() -> FakeHost {
        let host = FakeHost {
            dir: TempDir::new("doctor"),
        };
        host.write("proc/sys/kernel/osrelease", "6.1.0-crabbox-fake\n");
        host.write(
            "proc/filesystems",
            "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\nnodev\toverlay\n",
        );
        for (ns, inode) in [
            ("cgroup", 4026531835u64),
            ("ipc", 4026531839),
            ("mnt", 4026531841),
            ("net", 4026531840),
            ("pid", 4026531836),
            ("user", 4026531837),
            ("uts", 4026531838),
        ] {
            host.mkdir("proc/self/ns");
            symlink(
                format!("{ns}:[{inode}]"),
                host.path("proc/self/ns").join(ns),
            )
            .unwrap();
        }
        host.write("proc/sys/user/max_user_namespaces", "63413\n");
        host.write(
            "proc/self/mountinfo",
            "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n\
             23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n",
        );
        host.write("proc/sys/net/ipv4/ip_forward", "1\n");
        host.routes(&[
            ("eth0", [0, 0, 0, 0], [0, 0, 0, 0]),
            ("eth0", [192, 168, 1, 0], [255, 255, 255, 0]),
        ]);
        host.tcp(&[]);
        host.cgroup_v2("cpuset cpu io memory hugetlb pids rdma misc");
        host.mkdir("root");
        host
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.path(rel)).unwrap();
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn remove(&self, rel: &str) {
        let path = self.path(rel);
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    /// /proc/net/route with these (interface, destination, mask) routes.
    fn routes(&self, routes: &[(&str, [u8; 4], [u8; 4])]) {
        let mut text = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        for (iface, dest, mask) in routes {
            let gateway = if *mask == [0, 0, 0, 0] {
                route_hex([192, 168, 1, 1])
            } else {
                route_hex([0, 0, 0, 0])
            };
            text.push_str(&format!(
                "{iface}\t{}\t{gateway}\t0001\t0\t0\t0\t{}\t0\t0\t0\n",
                route_hex(*dest),
                route_hex(*mask)
            ));
        }
        self.write("proc/net/route", &text);
    }

    /// /proc/net/tcp and tcp6 with these (v6?, local port, state, inode) sockets.
    fn tcp(&self, sockets: &[(bool, u16, &str, u32)]) {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let (mut v4, mut v6) = (header.to_string(), header.to_string());
        for (i, (is_v6, port, state, inode)) in sockets.iter().enumerate() {
            let (local, remote) = if *is_v6 {
                ("0".repeat(32), "0".repeat(32))
            } else {
                ("00000000".to_string(), "00000000".to_string())
            };
            let line = format!(
                "{i:4}: {local}:{port:04X} {remote}:0000 {state} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
            );
            if *is_v6 {
                v6.push_str(&line);
            } else {
                v4.push_str(&line);
            }
        }
        self.write("proc/net/tcp", &v4);
        self.write("proc/net/tcp6", &v6);
    }

    /// A pure cgroup v2 host with these controllers.
    fn cgroup_v2(&self, controllers: &str) {
        let _ = std::fs::remove_dir_all(self.path("sys/fs/cgroup"));
        self.write(
            "sys/fs/cgroup/cgroup.controllers",
            &format!("{controllers}\n"),
        );
        self.write(
            "proc/cgroups",
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t80\t1\nmemory\t0\t80\t1\npids\t0\t80\t1\n",
        );
    }

    /// A v1 host (with the empty v2 tree of a hybrid one when `hybrid`).
    fn cgroup_v1(&self, controllers: &[&str], hybrid: bool) {
        let _ = std::fs::remove_dir_all(self.path("sys/fs/cgroup"));
        let mut table = String::from("#subsys_name\thierarchy\tnum_cgroups\tenabled\n");
        for (i, c) in [
            "cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "pids",
        ]
        .iter()
        .enumerate()
        {
            let mounted = controllers.contains(c);
            if mounted {
                self.mkdir(&format!("sys/fs/cgroup/{c}"));
            }
            let hierarchy = if mounted { i + 1 } else { 0 };
            table.push_str(&format!("{c}\t{hierarchy}\t42\t1\n"));
        }
        self.mkdir("sys/fs/cgroup/systemd");
        if hybrid {
            self.write("sys/fs/cgroup/unified/cgroup.controllers", "");
        }
        self.write("proc/cgroups", &table);
    }

    fn doctor(&self) -> Doctor {
        let run = Run::from_output(
            Command::new(script("doctor"))
                .arg("--proc")
                .arg(self.path("proc"))
                .arg("--sys")
                .arg(self.path("sys"))
                .arg("--root")
                .arg(self.path("root/var/lib/crabbox"))
                .env_remove("CRABBOX_ROOT")
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/doctor"),
        );
        Doctor::parse(run)
    }
}

/// The doctor's output, one (status, check, text) per check line.
struct Doctor {
    run: Run,
    lines: Vec<(String, String, String)>,
}

impl Doctor {
    fn parse(run: Run) -> Doctor {
        assert!(
            !run.stderr.contains("Traceback"),
            "the doctor crashed:\n{}",
            run.stderr
        );
        let mut lines = vec![];
        for line in run.stdout.lines() {
            let Some((status, rest)) = line.split_once(' ') else {
                continue;
            };
            if !["ok", "warn", "FAIL"].contains(&status) {
                continue;
            }
            let (check, text) = rest
                .trim_start()
                .split_once(": ")
                .unwrap_or_else(|| panic!("a check line is `STATUS CHECK: TEXT`: {line}"));
            lines.push((status.to_string(), check.to_string(), text.to_string()));
        }
        let fails = lines.iter().any(|(s, _, _)| s == "FAIL");
        assert_eq!(
            run.code,
            i32::from(fails),
            "exit 1 with a FAIL, 0 without:\n{}",
            run.stdout
        );
        Doctor { run, lines }
    }

    /// The status and text of `check`.
    #[track_caller]
    fn check(&self, check: &str) -> (&str, &str) {
        let found: Vec<_> = self.lines.iter().filter(|(_, c, _)| c == check).collect();
        assert_eq!(
            found.len(),
            1,
            "one line for {check}, in:\n{}",
            self.run.stdout
        );
        (&found[0].0, &found[0].2)
    }

    #[track_caller]
    fn expect(&self, check: &str, status: &str, words: &[&str]) -> &str {
        let (got, text) = self.check(check);
        assert_eq!(got, status, "{check}: {text}\n\nall:\n{}", self.run.stdout);
        for word in words {
            assert!(
                text.contains(word),
                "{check}: `{word}` missing from: {text}"
            );
        }
        text
    }
}

fn python() -> bool {
    tool("python3", "python3")
}

#[test]
fn doctor_on_a_healthy_fake_host() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    let d = host.doctor();
    d.expect("kernel", "ok", &["6.1.0-crabbox-fake", "5.12+"]);
    d.expect("overlayfs", "ok", &["available"]);
    d.expect("engine root", "ok", &["ext4", "not overlayfs"]);
    d.expect("namespaces", "ok", &["mount", "PID", "network"]);
    d.expect("user namespaces", "ok", &[]);
    d.expect("cgroups", "ok", &["v2 (unified)", "memory", "pids", "cpu"]);
    d.expect("ip_forward", "ok", &["1"]);
    d.expect("routes", "ok", &["172.17.0.0/16"]);
    d.expect("port 8080", "ok", &["free"]);
    // The root, tools and disk checks look at the real machine: present.
    for check in ["root", "ip", "iptables", "forward policy", "disk"] {
        d.check(check);
    }
}

#[test]
fn doctor_fails_an_old_kernel_and_warns_on_5_11() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    host.write("proc/sys/kernel/osrelease", "4.19.0-26-amd64\n");
    let d = host.doctor();
    let text = d.expect(
        "kernel",
        "FAIL",
        &[
            "4.19.0-26-amd64",
            "too old",
            "5.11",
            "close_range",
            "5.12",
            "upgrade",
        ],
    );
    assert!(text.contains("recursive read-only"), "{text}");
    assert_eq!(d.run.code, 1, "a FAIL exits 1");
    assert!(
        d.run.stdout.contains("fix the FAIL lines"),
        "{}",
        d.run.stdout
    );

    host.write("proc/sys/kernel/osrelease", "5.11.22\n");
    host.doctor()
        .expect("kernel", "warn", &["5.11.22", "5.12+"]);
    host.write("proc/sys/kernel/osrelease", "5.12.0\n");
    host.doctor().expect("kernel", "ok", &[]);
}

#[test]
fn doctor_fails_without_overlayfs_and_on_an_overlay_engine_root() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    host.write("proc/filesystems", "nodev\tsysfs\nnodev\tproc\n\text4\n");
    let d = host.doctor();
    d.expect(
        "overlayfs",
        "FAIL",
        &["no overlay filesystem", "chapters 2-6"],
    );
    assert_eq!(d.run.code, 1);

    // A learner inside a docker container: the engine root is on overlayfs.
    let host = FakeHost::new();
    host.write(
        "proc/self/mountinfo",
        "412 330 0:45 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n\
         413 412 0:50 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n",
    );
    let d = host.doctor();
    d.expect(
        "engine root",
        "FAIL",
        &["on overlayfs", "inside a", "container", "--root"],
    );
    // The nearest existing parent is what is measured, and said.
    d.expect(
        "engine root",
        "FAIL",
        &["root/var/lib/crabbox (its parent", "/root exists)"],
    );
}

#[test]
fn doctor_names_missing_namespaces() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    host.remove("proc/self/ns/pid");
    host.remove("proc/self/ns/user");
    let d = host.doctor();
    d.expect("namespaces", "FAIL", &["missing pid"]);
    d.expect("user namespaces", "warn", &["optional"]);

    let host = FakeHost::new();
    host.write("proc/sys/user/max_user_namespaces", "0\n");
    host.doctor().expect(
        "user namespaces",
        "warn",
        &["switched off", "max_user_namespaces"],
    );
}

#[test]
fn doctor_reads_each_cgroup_layout() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    // cgroup v2 only, every controller.
    host.doctor()
        .expect("cgroups", "ok", &["v2 (unified)", "cpu", "memory", "pids"]);
    // v2 without the memory controller.
    host.cgroup_v2("cpu io pids");
    host.doctor().expect(
        "cgroups",
        "warn",
        &["v2 (unified)", "missing memory", "--memory"],
    );
    // Hybrid, as on this project's machines: v1 controllers, an empty v2 tree.
    host.cgroup_v1(
        &["cpu", "cpuacct", "memory", "devices", "pids", "freezer"],
        true,
    );
    host.doctor().expect(
        "cgroups",
        "ok",
        &[
            "hybrid",
            "v1 controllers",
            "cpu",
            "devices",
            "memory",
            "pids",
            "/sys/fs/cgroup/unified",
            "controllers: none",
        ],
    );
    // Pure v1.
    host.cgroup_v1(&["cpu", "memory", "devices", "pids"], false);
    let text = host
        .doctor()
        .expect("cgroups", "ok", &["v1 with controllers"])
        .to_string();
    assert!(!text.contains("hybrid"), "{text}");
    // v1 without pids.
    host.cgroup_v1(&["cpu", "memory", "devices"], true);
    host.doctor()
        .expect("cgroups", "warn", &["hybrid", "missing pids"]);
    // No cgroup filesystem at all.
    host.remove("sys/fs/cgroup");
    host.doctor()
        .expect("cgroups", "FAIL", &["no cgroup filesystem"]);
}

#[test]
fn doctor_warns_of_routes_over_the_default_bridge_subnet() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    let default = ("eth0", [0, 0, 0, 0], [0, 0, 0, 0]);
    // docker's own bridge.
    host.routes(&[default, ("docker0", [172, 17, 0, 0], [255, 255, 0, 0])]);
    host.doctor().expect(
        "routes",
        "warn",
        &[
            "172.17.0.0/16 on docker0 (docker's own bridge)",
            "overlaps 172.17.0.0/16",
            "next free subnet",
        ],
    );
    // A VPN's wider route covering it.
    host.routes(&[default, ("tun0", [172, 16, 0, 0], [255, 240, 0, 0])]);
    host.doctor()
        .expect("routes", "warn", &["172.16.0.0/12 on tun0 (a VPN)"]);
    // A narrower one inside it.
    host.routes(&[default, ("wg0", [172, 17, 5, 0], [255, 255, 255, 0])]);
    host.doctor()
        .expect("routes", "warn", &["172.17.5.0/24 on wg0 (a VPN)"]);
    // Neighbours that do not overlap, and crabbox's own bridge.
    host.routes(&[
        default,
        ("br-1234", [172, 18, 0, 0], [255, 255, 0, 0]),
        ("crabbox0", [172, 17, 0, 0], [255, 255, 0, 0]),
        ("eth0", [10, 0, 0, 0], [255, 0, 0, 0]),
    ]);
    host.doctor().expect("routes", "ok", &[]);
}

#[test]
fn doctor_warns_when_port_8080_is_taken() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    // Established connections on 8080 and a listener on 8081 are no matter.
    host.tcp(&[(false, 8080, "01", 100), (false, 8081, "0A", 101)]);
    host.doctor().expect("port 8080", "ok", &["free"]);
    // A listener, owned by a process the fake /proc shows.
    host.tcp(&[(false, 8080, "0A", 777)]);
    host.write("proc/4242/comm", "python3\n");
    host.mkdir("proc/4242/fd");
    symlink("socket:[777]", host.path("proc/4242/fd/3")).unwrap();
    host.doctor().expect(
        "port 8080",
        "warn",
        &[
            "python3 (pid 4242) listens on port 8080",
            "-p 8080:80",
            "-p 8081:80",
        ],
    );
    // An IPv6 listener counts too.
    host.tcp(&[(true, 8080, "0A", 778)]);
    host.doctor()
        .expect("port 8080", "warn", &["listens on port 8080"]);
}

#[test]
fn doctor_says_ip_forward_off_is_fine() {
    if !python() {
        return;
    }
    let host = FakeHost::new();
    host.write("proc/sys/net/ipv4/ip_forward", "0\n");
    host.doctor()
        .expect("ip_forward", "ok", &["0", "chapter 6 turns it on"]);
}

#[test]
fn doctor_on_this_machine_prints_a_line_per_check() {
    if !python() {
        return;
    }
    let run = Run::from_output(
        Command::new(script("doctor"))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/doctor"),
    );
    eprintln!("{}", run.stdout);
    let d = Doctor::parse(run);
    for check in [
        "root",
        "kernel",
        "overlayfs",
        "engine root",
        "namespaces",
        "user namespaces",
        "cgroups",
        "ip",
        "iptables",
        "forward policy",
        "ip_forward",
        "routes",
        "port 8080",
        "disk",
    ] {
        d.check(check);
    }
    assert!(
        !d.lines
            .iter()
            .any(|(_, c, _)| c.contains("docker.io") || c.contains("debian.org")),
        "the online checks run only with --online"
    );
    let last = d.run.stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("doctor: "), "a summary line last: {last}");
}
