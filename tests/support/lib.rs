//! Support for the end-to-end tests: the chapter binaries, fresh engine
//! roots, the fixture images, and real `docker-registry` servers on
//! loopback, each cleaned up when its guard is dropped (also when a test
//! fails, since guards drop while a panic unwinds).

pub mod containers;
pub mod devices;
pub mod hostile;
pub mod layers;
pub mod netns;
pub mod probes;
pub mod registry;
pub mod transcript;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub use registry::{Registry, RegistryAuth};

/// The workspace root (where Cargo.toml and scripts/ live).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The target directory that holds the chapter binaries.
fn target_dir() -> PathBuf {
    // The test executable is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The path of a chapter binary. `scripts/test` builds them before the
/// tests; a plain `cargo test` builds them here when they are missing or
/// older than the chapters' sources.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let path = target_dir().join(name);
    BUILT.get_or_init(|| {
        if is_fresh(&path) {
            return;
        }
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--workspace", "--bins", "--quiet"])
            .current_dir(workspace());
        // Cargo gives this test process the variables of *its* package
        // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, …). Passed on, they would
        // differ from what `cargo build` had when it built the
        // dependencies, and every build script that watches one (ring's
        // does) would run again, with ring, rustls and ureq rebuilt: 27 s
        // for a one-line edit instead of a few.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let from_cargo = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*key);
            if from_cargo {
                build.env_remove(&*key);
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
    });
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Is the binary newer than every source file of every chapter?
fn is_fresh(binary: &Path) -> bool {
    /// The newest modification time of a file, or of anything in a directory.
    fn newest(path: &Path) -> std::time::SystemTime {
        let own = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let children = std::fs::read_dir(path).into_iter().flatten().flatten();
        children
            .map(|entry| newest(&entry.path()))
            .fold(own, std::cmp::max)
    }
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return false;
    };
    built >= newest(&workspace().join("chapters"))
        && built >= newest(&workspace().join("Cargo.lock"))
}

/// The directory that holds the chapter binaries (to put on PATH).
pub fn bin_dir() -> PathBuf {
    bin("ch01-images").parent().expect("bin dir").to_path_buf()
}

/// A fresh temporary directory, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let base =
            std::env::temp_dir().join(format!("crabbox-test-{label}-{}-", std::process::id()));
        let template = format!("{}XXXXXX", base.display());
        let path = nix::unistd::mkdtemp(template.as_str()).expect("mkdtemp");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The result of running a command, with helpers for assertions.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts failure with this exit code and a one-line error on stderr.
    #[track_caller]
    pub fn fails_with(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "an error must be one line, got:\n{}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        lines[0]
    }
}

/// An engine root for one test, with the commands a learner would type.
pub struct Engine {
    pub root: TempDir,
    pub docker_config: TempDir,
    pub env: Vec<(String, String)>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine {
            root: TempDir::new("root"),
            docker_config: TempDir::new("dockercfg"),
            env: vec![],
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Engine {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line for `binary ARGS` on this engine root.
    pub fn command(&self, binary: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin(binary));
        cmd.args(args)
            .env("CRABBOX_ROOT", self.root.path())
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("CRABBOX_EXPLAIN")
            .env_remove("CRABBOX_REGISTRY_MIRROR")
            .env_remove("CRABBOX_INSECURE_REGISTRIES")
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, binary: &str, args: &[&str]) -> Run {
        Run::from_output(
            self.command(binary, args)
                .output()
                .expect("run chapter binary"),
        )
    }

    /// Every blob of the store, checked against its name.
    pub fn assert_store_consistent(&self) {
        let blobs = self.root.join("images/blobs/sha256");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
                assert_eq!(
                    digest,
                    entry.file_name().to_string_lossy(),
                    "blob {} does not match its digest",
                    entry.path().display()
                );
            }
        }
        if let Ok(index) = std::fs::read(self.root.join("images/index.json")) {
            let index: serde_json::Value =
                serde_json::from_slice(&index).expect("index.json is JSON");
            for m in index["manifests"].as_array().unwrap() {
                let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
                assert!(
                    blobs.join(hex).exists(),
                    "index.json names a missing manifest {hex}"
                );
            }
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

/// The fixture images, built once (by scripts/fixtures, idempotent and
/// locked) into target/crabbox-fixtures.
pub struct Fixtures {
    pub dir: PathBuf,
    pub manifest: serde_json::Value,
}

impl Fixtures {
    /// The registry storage directory holding every fixture.
    pub fn registry_storage(&self) -> PathBuf {
        self.dir.join("registry")
    }

    /// The OCI layout the fixtures were built in.
    pub fn oci_layout(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// A fixture's entry in fixtures.json.
    pub fn get(&self, name: &str) -> &serde_json::Value {
        &self.manifest["fixtures"][name]
    }
}

pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = target_dir()
            .parent()
            .expect("target")
            .join("crabbox-fixtures");
        let out = Command::new(workspace().join("scripts/fixtures"))
            .arg(&dir)
            .output()
            .expect("run scripts/fixtures");
        assert!(
            out.status.success(),
            "scripts/fixtures failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest = serde_json::from_slice(
            &std::fs::read(dir.join("fixtures.json")).expect("fixtures.json"),
        )
        .expect("JSON");
        Fixtures { dir, manifest }
    })
}

/// Is this process root? Tests that need it call [`require_root`].
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns false (and says so loudly) when a privileged test must be
/// skipped; under CRABBOX_REQUIRE_PRIVILEGED=1 a skip is a failure.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CRABBOX_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: needs root, and CRABBOX_REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    eprintln!("skipped: {test} needs root");
    false
}

/// Runs a shell command line (for peer tools like skopeo and umoci).
pub fn sh(script: &str) -> Run {
    Run::from_output(
        Command::new("bash")
            .args(["-c", script])
            .output()
            .expect("run bash"),
    )
}

/// sha256 of some bytes, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// sha256 of a file, as hex.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes))
}
