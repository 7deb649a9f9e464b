//! The notes' example app (examples/notes-app) end to end, as root: the
//! capstone of chapter 6, driven through `scripts/notes-app` as a learner
//! would drive it.
//!
//! The four images (a Debian base made from `scripts/debian-base`'s root
//! filesystem tar, cached in `target/notes-app/`, then `notes-db`,
//! `notes-app` and `notes-web`) are built by the engine once per test
//! process, in one fresh engine root that every test here shares
//! ([`shared`]), in the machine's own network namespace: their `RUN` steps
//! download Debian packages from Debian's archive (Docker Hub is never
//! contacted). Everything after the builds runs in a network namespace
//! the test made ([`Netns`]): the network `notes`, its bridge, the veths,
//! the iptables rules and the published port 8080 are the namespace's,
//! and vanish with it; requests go to its loopback only. The tests take
//! turns ([`Lab::new`] holds a lock): the containers `db`, `app` and
//! `web` have one name each in the shared engine root.
//!
//! A container's resolv.conf is the machine's, whose server no container
//! in the namespace can reach (the namespace has no way out): nothing in
//! the app asks DNS, the containers find each other in /etc/hosts.

use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use support::containers::{
    assert_no_cgroup_left, clean_up_engine_root, container_dirs, mounts_under,
};
use support::netns::Netns;
use support::transcript::{self, output_matches};
use support::{bin, bin_dir, require_root, workspace, Engine, Run};

const BIN: &str = "ch06-bridge";
const URL: &str = "http://127.0.0.1:8080/";
const SERVICES: [&str; 3] = ["db", "app", "web"];
const IMAGES: [&str; 3] = ["notes-db", "notes-app", "notes-web"];

/// The engine root every test here uses, with the four images built in it.
struct Shared {
    engine: Engine,
    /// The uid of `postgres` in the notes-db image.
    postgres_uid: u32,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The shared engine root, its images built on first use (None, and a
/// loud skip, when not root). A failed build fails every test, each with
/// the build's output.
fn shared(test: &str) -> Option<&'static Shared> {
    if !require_root(test) {
        return None;
    }
    match SHARED.get_or_init(build_images) {
        Ok(shared) => Some(shared),
        Err(why) => panic!("{test}: the notes' images could not be built:\n{why}"),
    }
}

/// At exit: what the tests left under the shared root (processes, mounts,
/// cgroups), then the root itself. A static is never dropped, so its
/// `TempDir`s are removed here.
extern "C" fn remove_shared_root() {
    if let Some(Ok(shared)) = SHARED.get() {
        clean_up_engine_root(shared.engine.root.path());
        let _ = std::fs::remove_dir_all(shared.engine.root.path());
        let _ = std::fs::remove_dir_all(shared.engine.docker_config.path());
    }
}

/// `scripts/notes-app ARGS` on `engine`'s root, with the tests' engine binary.
fn script(engine: &Engine, args: &[&str]) -> Command {
    let mut command = Command::new(workspace().join("scripts/notes-app"));
    command
        .args(args)
        .env("CRABBOX_ROOT", engine.root.path())
        .env("CRABBOX_BIN", bin(BIN))
        .env("DOCKER_CONFIG", engine.docker_config.path())
        .env_remove("CRABBOX_EXPLAIN")
        .env_remove("CRABBOX_REGISTRY_MIRROR")
        .stdin(Stdio::null());
    command
}

/// `scripts/notes-app build` in a fresh root, in the machine's namespace.
fn build_images() -> Result<Shared, String> {
    let engine = Engine::new();
    let started = Instant::now();
    let build = Run::from_output(
        script(&engine, &["build"])
            .output()
            .map_err(|e| format!("run scripts/notes-app build: {e}"))?,
    );
    if build.code != 0 {
        clean_up_engine_root(engine.root.path());
        return Err(format!(
            "scripts/notes-app build exited {}\nstdout:\n{}\nstderr:\n{}",
            build.code, build.stdout, build.stderr
        ));
    }
    eprintln!(
        "notes_app: base tar and four images built in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // What each step weighs (the compressed size of its layer).
    for image in IMAGES {
        eprintln!("{}", engine.run(BIN, &["history", image]).stdout);
    }
    let id = engine.run(
        BIN,
        &["run", "--rm", "--network", "none", "notes-db", "id", "-u"],
    );
    let postgres_uid = id.stdout.trim().parse().map_err(|_| {
        clean_up_engine_root(engine.root.path());
        format!(
            "`id -u` in notes-db printed {:?} (stderr: {})",
            id.stdout, id.stderr
        )
    })?;
    // SAFETY: registers a plain function, run once at exit.
    unsafe { libc::atexit(remove_shared_root) };
    Ok(Shared {
        engine,
        postgres_uid,
    })
}

/// One test's turn: the shared root, a network namespace of its own, and
/// the lock that keeps the other tests waiting. The namespace goes first
/// (it kills whatever is left in it), then the lock.
struct Lab {
    ns: Netns,
    shared: &'static Shared,
    /// The containers seen during the test: their cgroups must be gone.
    seen: Mutex<BTreeSet<String>>,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    fn new(test: &str) -> Option<Lab> {
        static TURN: Mutex<()> = Mutex::new(());
        let shared = shared(test)?;
        // A test that failed while holding the lock poisoned it: the next
        // one still runs (it cleans up first).
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let lab = Lab {
            ns: Netns::new(),
            shared,
            seen: Mutex::new(BTreeSet::new()),
            _turn: turn,
        };
        lab.start_clean();
        Some(lab)
    }

    fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    fn root(&self) -> &Path {
        self.engine().root.path()
    }

    /// What an earlier test that failed may have left: its containers
    /// (their processes died with its namespace), the volume, the network.
    fn start_clean(&self) {
        clean_up_engine_root(self.root());
        let _ = self.run(&["rm", "-f", "db", "app", "web"]);
        let _ = self.run(&["volume", "rm", "-f", "notes-db"]);
        let _ = self.run(&["network", "rm", "notes"]);
        assert_eq!(container_dirs(self.root()), Vec::<PathBuf>::new());
    }

    fn note_containers(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for dir in container_dirs(self.root()) {
            seen.insert(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }

    /// `ch06-bridge ARGS`, in the namespace.
    fn run(&self, args: &[&str]) -> Run {
        let run = self.ns.run(self.engine(), BIN, args);
        self.note_containers();
        run
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.run(args).ok().to_string()
    }

    /// `scripts/notes-app ARGS`, in the namespace, bounded.
    fn script(&self, args: &[&str], limit: Duration) -> Run {
        let mut command = self.ns.wrap(&script(self.engine(), args));
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let run = support::containers::wait_bounded(command.spawn().unwrap(), limit);
        self.note_containers();
        run
    }

    #[track_caller]
    fn script_ok(&self, args: &[&str]) -> Run {
        let run = self.script(args, Duration::from_secs(90));
        assert_eq!(
            run.code, 0,
            "scripts/notes-app {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        run
    }

    /// GET `URL` from the namespace: the status code and the body.
    fn get(&self) -> (u16, String) {
        let out = self
            .ns
            .command("curl", &["-s", "-m", "10", "-w", "\n%{http_code}", URL])
            .output()
            .expect("run curl (scripts/setup installs it)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.trim().to_string())
    }

    /// GET `URL`, which must answer `visits: N`; returns N.
    #[track_caller]
    fn visit(&self) -> u64 {
        let (code, body) = self.get();
        assert_eq!(code, 200, "GET {URL}: {code} {body:?}");
        body.strip_prefix("visits: ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("GET {URL}: {body:?} is not `visits: N`"))
    }

    /// The state of each service, from `scripts/notes-app status`.
    fn states(&self) -> Vec<String> {
        let status = self.script_ok(&["status"]).stdout;
        SERVICES
            .iter()
            .map(|s| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{s:<4} ")))
                    .unwrap_or_else(|| panic!("no line for {s} in:\n{status}"))
                    .to_string()
            })
            .collect()
    }

    /// `network inspect notes`, its one object.
    fn network(&self) -> Value {
        let json: Value = serde_json::from_str(&self.ok(&["network", "inspect", "notes"]))
            .expect("network inspect prints JSON");
        json[0].clone()
    }

    /// The namespace's iptables rules, `TABLE -A CHAIN …`.
    fn rules(&self) -> Vec<String> {
        let mut table = String::new();
        let mut rules = Vec::new();
        for line in self.ns.sh("iptables-save").ok().lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_string();
            } else if line.starts_with("-A ") {
                rules.push(format!("{table} {line}"));
            }
        }
        rules
    }

    /// The namespace's veths.
    fn veths(&self) -> Vec<String> {
        let out = self.ns.sh("ip -o link show type veth").ok().to_string();
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .collect()
    }

    /// After `down --volumes`: nothing of the app is left.
    #[track_caller]
    fn assert_nothing_left(&self, bridge: &str, subnet: &str) {
        assert_eq!(self.states(), ["not created"; 3], "containers left");
        assert_eq!(
            container_dirs(self.root()),
            Vec::<PathBuf>::new(),
            "container directories left"
        );
        // A container's veth pair goes with its network namespace, which
        // the kernel tears down a moment after `rm`: bounded wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.veths().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.veths(), Vec::<String>::new(), "veths left");
        let links = self.ns.sh("ip -o link").ok().to_string();
        assert!(!links.contains(bridge), "{bridge} is still there:\n{links}");
        let ours: Vec<String> = self
            .rules()
            .into_iter()
            .filter(|r| r.contains(bridge) || r.contains(subnet) || r.contains("8080"))
            .collect();
        assert_eq!(ours, Vec::<String>::new(), "rules of the app left");
        assert_eq!(
            mounts_under(self.root()),
            Vec::<String>::new(),
            "mounts left under the engine root"
        );
        assert_eq!(self.ok(&["volume", "ls", "-q"]).trim(), "", "volumes left");
        assert!(!self.root().join("volumes/notes-db").exists());
        let networks = self.ok(&["network", "ls"]);
        assert!(
            !networks
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some("notes")),
            "{networks}"
        );
        let seen: Vec<String> = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        assert!(seen.len() >= 3, "the containers were never seen: {seen:?}");
        for id in seen {
            assert_no_cgroup_left(&id);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A failed test's containers: killed, their mounts detached, their
        // cgroups removed (the next test removes their records).
        clean_up_engine_root(self.root());
    }
}

#[test]
fn the_app_counts_visits_keeps_them_in_its_volume_and_survives_a_database_restart() {
    let Some(lab) =
        Lab::new("the_app_counts_visits_keeps_them_in_its_volume_and_survives_a_database_restart")
    else {
        return;
    };
    let up = lab.script_ok(&["up"]);
    assert!(
        up.stdout
            .ends_with("The notes' app: http://127.0.0.1:8080/\n"),
        "{}",
        up.stdout
    );
    // Each engine command is shown before it runs.
    for shown in [
        "+ ch06-bridge network create notes",
        "+ ch06-bridge volume create notes-db",
        "+ ch06-bridge run -d --name db --network notes -v notes-db:/var/lib/postgresql notes-db",
        "+ ch06-bridge run -d --name app --network notes notes-app",
        "+ ch06-bridge run -d --name web --network notes -p 8080:80 notes-web",
    ] {
        assert!(
            up.stderr.contains(shown),
            "`{shown}` not shown:\n{}",
            up.stderr
        );
    }
    assert_eq!(lab.states(), ["running"; 3]);
    assert_eq!([lab.visit(), lab.visit(), lab.visit()], [1, 2, 3]);

    // The three on one network, found by name.
    let network = lab.network();
    let mut names: Vec<&str> = network["Containers"]
        .as_object()
        .expect("Containers")
        .values()
        .map(|c| c["Name"].as_str().expect("Name"))
        .collect();
    names.sort();
    assert_eq!(names, ["app", "db", "web"], "{network:#}");
    let bridge = network["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("a bridge")
        .to_string();
    let subnet = network["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .expect("a subnet")
        .to_string();

    // The database's files are in the volume, owned by the image's postgres.
    let volume: Value =
        serde_json::from_str(&lab.ok(&["volume", "inspect", "notes-db"])).expect("JSON");
    let mountpoint = PathBuf::from(volume[0]["Mountpoint"].as_str().expect("a Mountpoint"));
    assert_eq!(mountpoint, lab.root().join("volumes/notes-db/_data"));
    let data = mountpoint.join("15/main");
    let meta = std::fs::metadata(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    assert_eq!(
        meta.uid(),
        lab.shared.postgres_uid,
        "{} owner",
        data.display()
    );
    assert_eq!(meta.mode() & 0o777, 0o700, "{} mode", data.display());
    assert!(data.join("PG_VERSION").exists());

    // down keeps the volume; up again: the count goes on.
    let started = Instant::now();
    let down = lab.script_ok(&["down"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "down took {:?}: a service ignored its stop signal\n{}",
        started.elapsed(),
        down.stderr
    );
    assert!(
        down.stdout.contains("The volume notes-db is kept"),
        "{}",
        down.stdout
    );
    assert_eq!(lab.states(), ["not created"; 3]);
    assert!(mountpoint.join("15/main/PG_VERSION").exists());
    lab.script_ok(&["up"]);
    assert_eq!(lab.visit(), 4);

    // The database stops: nginx answers the app's 503 at once (libpq's
    // connect_timeout, 2 s: nobody answers at db's address any more).
    let started = Instant::now();
    lab.ok(&["stop", "db"]);
    let (code, body) = lab.get();
    let took = started.elapsed();
    assert_eq!((code, body.as_str()), (503, "database unavailable"));
    assert!(took < Duration::from_secs(3), "503 after {took:?}");
    assert_eq!(lab.states(), ["exited", "running", "running"]);

    // Back: within 10 s, 200 again, and no visit was lost or counted twice.
    lab.ok(&["start", "db"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let visits = loop {
        match lab.get() {
            (200, body) => break body,
            (code, body) => assert!(
                Instant::now() < deadline,
                "db restarted, GET still answers {code} {body:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(visits, "visits: 5");
    assert_eq!(lab.visit(), 6);

    // Everything goes, the volume too.
    lab.script_ok(&["down", "--volumes"]);
    lab.assert_nothing_left(&bridge, &subnet);
}

#[test]
fn the_images_are_built_as_their_dockerfiles_say() {
    let Some(lab) = Lab::new("the_images_are_built_as_their_dockerfiles_say") else {
        return;
    };
    let config = |image: &str| -> Value {
        let json: Value = serde_json::from_str(&lab.ok(&["inspect", image])).expect("JSON");
        json[0]["Config"].clone()
    };
    let base = config("debian:bookworm-slim");
    assert_eq!(base["Cmd"], serde_json::json!(["bash"]));
    let db = config("notes-db");
    assert_eq!(db["User"], "postgres");
    assert_eq!(db["StopSignal"], "SIGINT");
    assert!(db["Volumes"]["/var/lib/postgresql"].is_object(), "{db:#}");
    assert!(db["ExposedPorts"]["5432/tcp"].is_object(), "{db:#}");
    let app = config("notes-app");
    assert_eq!(app["User"], "nobody");
    assert!(app["ExposedPorts"]["8000/tcp"].is_object(), "{app:#}");
    let env = app["Env"].to_string();
    assert!(env.contains("DB_HOST=db"), "{env}");
    let web = config("notes-web");
    assert_eq!(web["StopSignal"], "SIGQUIT");
    assert!(web["ExposedPorts"]["80/tcp"].is_object(), "{web:#}");

    // One base layer shared by the three, named as Docker Hub's would be.
    let images = lab.ok(&["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["debian", "bookworm-slim"])),
        "{images}"
    );
    let layers = |image: &str| -> Vec<String> {
        let json: Value = serde_json::from_str(&lab.ok(&["inspect", image])).expect("JSON");
        json[0]["RootFS"]["Layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    let base_layers = layers("debian:bookworm-slim");
    assert_eq!(base_layers.len(), 1);
    for image in IMAGES {
        assert_eq!(layers(image)[0], base_layers[0], "{image}'s first layer");
    }

    // The base is slim: no manual or info page (install-info's index
    // aside), no documentation but the copyright files; no apt lists,
    // caches or downloaded packages left in any image by its apt-get
    // install; and a policy that starts no service.
    let check = lab.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "notes-web",
        "bash",
        "-c",
        "find /usr/share/man /usr/share/info -type f ! -path /usr/share/info/dir | wc -l; \
         find /usr/share/doc -type f ! -name copyright | wc -l; \
         find /var/lib/apt/lists /var/cache/apt -type f ! -name lock | wc -l; \
         /usr/sbin/policy-rc.d; echo $?",
    ]);
    assert_eq!(
        check.ok().split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "0", "101"],
        "man/info pages, docs, apt files, policy-rc.d's exit code"
    );
}

#[test]
fn the_book_transcript_runs() {
    let Some(lab) = Lab::new("the_book_transcript_runs") else {
        return;
    };
    let path = workspace().join("book/src/transcripts/notes-app.console");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let steps = transcript::parse(&text);
    assert!(!steps.is_empty(), "notes-app.console has no commands");
    let engine = lab.engine();
    let prepare = format!(
        "export PATH={}:$PATH CRABBOX_ROOT={} CRABBOX_BIN={} DOCKER_CONFIG={}; unset CRABBOX_EXPLAIN CRABBOX_REGISTRY_MIRROR; cd {}",
        bin_dir().display(),
        engine.root.path().display(),
        bin(BIN).display(),
        engine.docker_config.path().display(),
        workspace().display(),
    );
    let net = format!("--net={}", lab.ns.path().display());
    let outputs = transcript::run_with(
        &["nsenter", &net, "--"],
        &steps,
        &prepare,
        |cmd| cmd.to_string(),
        |out| out.to_string(),
    );
    lab.note_containers();
    for (step, output) in steps.iter().zip(&outputs) {
        let actual: Vec<&str> = output.lines().map(str::trim_end).collect();
        assert!(
            output_matches(&step.expected, &actual),
            "notes-app.console: `{}` printed:\n{output}\nbut the book shows:\n{}",
            step.command,
            step.expected.join("\n")
        );
    }
}

/// The notes' "publishing an image": the three images pushed to a registry
/// (a writable docker-registry on this machine's loopback, reached from
/// the machine's own namespace). The Debian base layer they share goes up
/// once: the next two mount it from the first repository.
#[test]
fn the_three_images_are_published_and_share_their_base_layer() {
    let Some(lab) = Lab::new("the_three_images_are_published_and_share_their_base_layer") else {
        return;
    };
    let storage = support::TempDir::new("notes-registry");
    let registry = support::Registry::start(storage.path(), false, support::RegistryAuth::None);
    let engine = lab.engine();
    let mut outputs = Vec::new();
    for image in IMAGES {
        let target = format!("{}/notes/{image}:1", registry.addr());
        engine.run(BIN, &["tag", image, &target]).ok();
        outputs.push(engine.run(BIN, &["push", &target]).ok().to_string());
        // What the registry serves is what we have: skopeo reads it.
        let ours: Value =
            serde_json::from_str(engine.run(BIN, &["inspect", &target]).ok()).expect("JSON");
        let theirs = support::sh(&format!(
            "skopeo inspect --tls-verify=false docker://{target}"
        ));
        assert_eq!(theirs.code, 0, "skopeo inspect {target}: {}", theirs.stderr);
        let theirs: Value = serde_json::from_str(&theirs.stdout).expect("skopeo's JSON");
        assert_eq!(ours[0]["Manifest"]["Digest"], theirs["Digest"], "{target}");
    }
    assert!(outputs[0].contains(": Pushed"), "{}", outputs[0]);
    for output in &outputs[1..] {
        assert!(
            output.contains("Mounted from notes/notes-db"),
            "the base layer was uploaded again:\n{output}"
        );
    }
}
