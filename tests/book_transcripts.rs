//! The book's "try it" transcripts, run for real: every command a reader
//! sees is executed here and its output compared with what the book shows.

use support::transcript::{self, output_matches};
use support::{bin_dir, fixtures, workspace, Registry, TempDir};

#[test]
fn chapter_01_try_it() {
    run_transcript("ch01-images.console");
}

fn run_transcript(name: &str) {
    run_transcript_with(name, &[], "");
}

/// Runs a transcript in a bash session started by `launcher`, after
/// `setup` (a shell line run in the same session, before any step).
fn run_transcript_with(name: &str, launcher: &[&str], setup: &str) {
    let path = workspace().join("book/src/transcripts").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let steps = transcript::parse(&text);
    assert!(!steps.is_empty(), "{name} has no commands");
    let registry = Registry::serve_fixtures(&fixtures().registry_storage());
    let root = TempDir::new("transcript");
    let docker_config = TempDir::new("transcript-dockercfg");
    let work = TempDir::new("transcript-work");
    let prepare = format!(
        "export PATH={}:$PATH CRABBOX_ROOT={} DOCKER_CONFIG={}; unset CRABBOX_EXPLAIN CRABBOX_REGISTRY_MIRROR; cd {}; {setup}",
        bin_dir().display(),
        root.path().display(),
        docker_config.path().display(),
        work.path().display()
    );
    if launcher.contains(&"--net") {
        // The namespace's engine finds the image in its store: the
        // fixture registry is on the host's loopback, out of its reach.
        let engine = |args: &[&str]| {
            let out = std::process::Command::new(support::bin("ch06-bridge"))
                .args(args)
                .env("CRABBOX_ROOT", root.path())
                .env("DOCKER_CONFIG", docker_config.path())
                .output()
                .expect("run ch06-bridge");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let image = format!("localhost:{}/busybox", registry.port);
        engine(&["pull", "-q", &image]);
        engine(&["tag", &image, "busybox"]);
    }
    let port = registry.port.to_string();
    let outputs = transcript::run_with(
        launcher,
        &steps,
        &prepare,
        |cmd| cmd.replace("localhost:5000", &format!("localhost:{port}")),
        |out| {
            out.replace(&format!("localhost:{port}"), "localhost:5000")
                .replace(&format!("127.0.0.1:{port}"), "localhost:5000")
        },
    );
    // Containers the transcript leaves (the book's `keep`) have cgroups.
    support::containers::clean_up_engine_root(root.path());
    for (step, output) in steps.iter().zip(&outputs) {
        let actual: Vec<&str> = output.lines().map(str::trim_end).collect();
        assert!(
            output_matches(&step.expected, &actual),
            "{name}: `{}` printed:\n{output}\nbut the book shows:\n{}",
            step.command,
            step.expected.join("\n")
        );
    }
}

#[test]
fn chapter_02_try_it() {
    // Mounting overlays needs root.
    if support::require_root("chapter_02_try_it") {
        run_transcript("ch02-layers.console");
    }
}

#[test]
fn chapter_03_try_it() {
    // Namespaces, mounts and pivot_root need root.
    if support::require_root("chapter_03_try_it") {
        run_transcript("ch03-run.console");
    }
}

#[test]
fn chapter_04_try_it() {
    // Every volume is a mount, in a container's namespaces.
    if support::require_root("chapter_04_try_it") {
        run_transcript("ch04-volumes.console");
    }
}

#[test]
fn chapter_05_try_it() {
    // Every RUN step is a container over an overlay mount.
    if support::require_root("chapter_05_try_it") {
        run_transcript("ch05-dockerfile.console");
    }
}

#[test]
fn chapter_06_try_it() {
    // Bridges, veths and iptables rules: in a network namespace of the
    // test's own (`unshare --net`), never on the machine's network; it
    // dies with the session, and all it holds with it.
    if support::require_root("chapter_06_try_it") {
        run_transcript_with(
            "ch06-bridge.console",
            &["unshare", "--net"],
            "ip link set lo up",
        );
    }
}
