//! Chapter 05 end to end: `ch05-dockerfile build` driven as a learner
//! would, as root, each test with its own engine root and the fixture
//! busybox from a real registry. What a user checks after a build: what
//! the image holds (`run`, `unpack`, the layer tars in the store), its
//! config (`inspect`, the config blob), what the build printed (steps,
//! `CACHED`), how bad input is refused (one line, `FILE:LINE`, the exit
//! code, nothing left behind), and that a RUN is a container in every
//! security sense. Layers are compared with `umoci unpack`'s reading of
//! the same image, pushed to a real registry and copied by skopeo.

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::containers::{mounts_under, Setup};
use support::devices::LoopDevice;
use support::layers::{assert_same_tree, snapshot, Kind, LayerTar, Tree};
use support::{sh, Registry, RegistryAuth, Run, TempDir};

const BIN: &str = "ch05-dockerfile";

/// An engine root with the fixture registry (the base image already
/// pulled), and a build context directory.
struct Lab {
    setup: Setup,
    /// The context is `dir/context`, so that `dir/secret` is just outside.
    dir: TempDir,
    ctx: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let setup = Setup::new(BIN);
        setup.pulled_image();
        let dir = TempDir::new("ch05-build");
        let ctx = dir.join("context");
        fs::create_dir(&ctx).unwrap();
        Lab { setup, dir, ctx }
    }

    /// The fixture busybox, as a Dockerfile names it.
    fn base(&self) -> String {
        self.setup.image()
    }

    fn root(&self) -> &Path {
        self.setup.engine.root.path()
    }

    /// Writes a file of the context (parents made); `{BASE}` in it becomes
    /// the fixture busybox.
    fn write(&self, relative: &str, text: &str) {
        let path = self.ctx.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text.replace("{BASE}", &self.base())).unwrap();
    }

    /// `build ARGS .` in the context directory (so `-f app.dockerfile` is
    /// the name errors show); returns what it did and the builder's PID.
    fn build_with_pid(&self, args: &[&str]) -> (Run, u32) {
        let mut full = vec!["build"];
        full.extend_from_slice(args);
        full.push(".");
        let mut command = self.setup.engine.command(BIN, &full);
        command
            .current_dir(&self.ctx)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("start the build");
        let pid = child.id();
        let run = support::containers::wait_bounded(child, Duration::from_secs(120));
        (run, pid)
    }

    fn build(&self, args: &[&str]) -> Run {
        self.build_with_pid(args).0
    }

    /// A build that must succeed; asserts it left nothing behind.
    #[track_caller]
    fn build_ok(&self, args: &[&str]) -> String {
        let (run, pid) = self.build_with_pid(args);
        run.ok();
        self.assert_build_left_nothing(pid);
        run.stdout
    }

    fn run(&self, args: &[&str]) -> Run {
        self.setup.run(args)
    }

    /// `run --rm IMAGE sh -c SCRIPT`, which must succeed.
    #[track_caller]
    fn sh(&self, image: &str, script: &str) -> String {
        self.run(&["run", "--rm", image, "sh", "-c", script])
            .ok()
            .to_string()
    }

    /// `inspect IMAGE`, its one object.
    #[track_caller]
    fn inspect(&self, image: &str) -> serde_json::Value {
        let out = self.run(&["inspect", image]);
        let json: serde_json::Value = serde_json::from_str(out.ok()).expect("inspect prints JSON");
        json[0].clone()
    }

    /// The bytes of a blob of the store.
    fn blob(&self, digest: &str) -> Vec<u8> {
        let path = self
            .root()
            .join("images/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The image's config blob, as stored.
    fn config_blob(&self, image: &str) -> serde_json::Value {
        let id = self.inspect(image)["Id"].as_str().unwrap().to_string();
        serde_json::from_slice(&self.blob(&id)).expect("the config is JSON")
    }

    /// The entries of each layer of the image (bottom first), read from
    /// the blobs the manifest names, with their diff IDs.
    fn layers(&self, image: &str) -> Vec<(String, Vec<Entry>)> {
        let inspect = self.inspect(image);
        let diff_ids = inspect["RootFS"]["Layers"].as_array().unwrap().clone();
        let layers = inspect["Manifest"]["Layers"].as_array().unwrap().clone();
        assert_eq!(diff_ids.len(), layers.len(), "{inspect:#}");
        layers
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                let bytes = self.blob(layer["digest"].as_str().unwrap());
                let media_type = layer["mediaType"].as_str().unwrap();
                let tar = if media_type.ends_with("gzip") {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                } else {
                    bytes
                };
                (diff_id.as_str().unwrap().to_string(), entries(&tar))
            })
            .collect()
    }

    /// `unpack IMAGE DIR` (chapter 2's), into a fresh directory.
    fn unpack(&self, image: &str) -> (TempDir, Tree) {
        let dir = TempDir::new("ch05-unpack");
        let target = dir.join("rootfs");
        self.run(&["unpack", image, target.to_str().unwrap()]).ok();
        let tree = snapshot(&target);
        (dir, tree)
    }

    /// The images of the store: REPOSITORY TAG IMAGE-ID of `images`.
    fn images(&self) -> Vec<String> {
        let out = self.run(&["images"]);
        let mut rows: Vec<String> = out
            .ok()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect();
        rows.sort();
        rows
    }

    /// What builds left under ROOT/builds.
    fn builds_left(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root().join("builds"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// What a build (PID `pid`) must not leave: a mount under the engine
    /// root, a container, a build directory, a RUN cgroup.
    fn problems_left_by(&self, pid: u32) -> Vec<String> {
        let mut problems = Vec::new();
        let mounts = mounts_under(self.root());
        if !mounts.is_empty() {
            problems.push(format!("mounts left: {mounts:?}"));
        }
        let containers = self.setup.container_dirs();
        if !containers.is_empty() {
            problems.push(format!("containers left: {containers:?}"));
        }
        let builds = self.builds_left();
        if !builds.is_empty() {
            problems.push(format!("build directories left: {builds:?}"));
        }
        let cgroups = build_cgroups(pid);
        if !cgroups.is_empty() {
            problems.push(format!("cgroups left: {cgroups:?}"));
        }
        problems
    }

    #[track_caller]
    fn assert_build_left_nothing(&self, pid: u32) {
        let problems = self.problems_left_by(pid);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Builds `dockerfile` (written as app.dockerfile) with `args`, which
    /// must be refused with exit `code` and one line holding each of
    /// `expected`, leaving no image and nothing else behind. Returns what
    /// is wrong (empty when all is right), so one test can list them all.
    fn refused(
        &self,
        case: &str,
        dockerfile: &str,
        args: &[&str],
        code: i32,
        expected: &[&str],
    ) -> Vec<String> {
        let before = self.images();
        self.write("app.dockerfile", dockerfile);
        let mut full = vec!["-t", "refused:1", "-f", "app.dockerfile"];
        full.extend_from_slice(args);
        let (out, pid) = self.build_with_pid(&full);
        let mut problems = Vec::new();
        if out.code != code {
            problems.push(format!("exit {} instead of {code}", out.code));
        }
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let line = lines.last().copied().unwrap_or_default();
        if lines.len() != 1 {
            problems.push(format!("{} lines on stderr instead of one", lines.len()));
        }
        if !line.starts_with("build: ") {
            problems.push("the error does not start with `build: `".into());
        }
        if out.stderr.contains("panicked") {
            problems.push("a panic".into());
        }
        for want in expected {
            if !line.contains(want) {
                problems.push(format!("the error lacks {want:?}"));
            }
        }
        if self.images() != before {
            problems.push(format!("images changed: {:?}", self.images()));
        }
        problems.extend(self.problems_left_by(pid));
        problems
            .into_iter()
            .map(|p| format!("{case}: {p}\n    stderr: {}", out.stderr.trim_end()))
            .collect()
    }
}

/// One entry of a layer tar: its path (no leading `./`, no trailing `/`).
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    size: u64,
}

fn entries(tar: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let path = raw
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_string();
            Entry {
                path,
                kind: e.header().entry_type(),
                size: e.header().size().unwrap(),
            }
        })
        .filter(|e| !e.path.is_empty() && e.path != ".")
        .collect()
}

/// One `Step N/M : …` of a build's output and the lines under it.
#[derive(Debug)]
struct Step {
    title: String,
    lines: Vec<String>,
}

impl Step {
    fn cached(&self) -> bool {
        self.lines.iter().any(|l| l.starts_with(" ---> CACHED"))
    }

    fn ran(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.starts_with(" ---> Running in "))
    }
}

fn steps(stdout: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("Step ") {
            steps.push(Step {
                title: line.to_string(),
                lines: Vec::new(),
            });
        } else if line.starts_with("Successfully ") || line.starts_with("Skipping stage ") {
            continue;
        } else if let Some(step) = steps.last_mut() {
            step.lines.push(line.to_string());
        }
    }
    steps
}

/// "title: CACHED|built" per step, to show in a failure.
fn summary(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} => {}",
                s.title,
                if s.cached() { "CACHED" } else { "built" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `crabbox/build-<pid>-*` cgroups, in every hierarchy.
fn build_cgroups(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("build-{pid}-");
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain(std::iter::once(root.to_path_buf()));
    let mut found = Vec::new();
    for hierarchy in hierarchies {
        for entry in fs::read_dir(hierarchy.join("crabbox"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(entry.path());
            }
        }
    }
    found
}

/// The processes (host PIDs) in a cgroup of build `pid`'s RUN steps.
fn processes_of_build(pid: u32) -> Vec<i32> {
    let needle = format!("/crabbox/build-{pid}-");
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/cgroup"))
                .map(|c| c.contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// The command line of a process, NULs as spaces.
fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn short(id: &str) -> &str {
    &id.trim_start_matches("sha256:")[..12]
}

fn file_content(tree: &Tree, path: &str, root: &Path) -> String {
    match tree.get(path).map(|n| &n.kind) {
        Some(Kind::File { .. }) => fs::read_to_string(root.join(path)).unwrap(),
        other => panic!("{path} is not a file in the image: {other:?}"),
    }
}

#[test]
fn a_multi_stage_build_makes_the_image_its_dockerfile_describes() {
    if !support::require_root("a_multi_stage_build_makes_the_image_its_dockerfile_describes") {
        return;
    }
    let lab = Lab::new();
    lab.write("notes.txt", "notes from the context\n");
    lab.write(
        "app.dockerfile",
        r#"FROM {BASE} AS builder
RUN mkdir -p /out && echo "made by the builder stage" > /out/message.txt
FROM {BASE} AS final
ENV GREETING=hello APP_HOME=/srv/app
WORKDIR $APP_HOME
COPY --from=builder /out/message.txt ./
COPY notes.txt ./
USER nobody
EXPOSE 80 53/udp 8000-8002
VOLUME ["/data"]
LABEL org.example.role=demo "with space"="a b"
STOPSIGNAL SIGUSR1
ENTRYPOINT ["cat"]
CMD ["message.txt", "notes.txt"]
"#,
    );
    let out = lab.build_ok(&[
        "-t",
        "app:1",
        "-t",
        "docker.io/library/app:2",
        "-f",
        "app.dockerfile",
        "--label",
        "built.by=the-test",
    ]);
    let image = lab.inspect("app:1");
    let id = image["Id"].as_str().unwrap();
    let base_id = lab.inspect(&lab.base())["Id"].as_str().unwrap().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("Step 1/14 : FROM {} AS builder", lab.base()),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(" ---> {} (", short(&base_id))),
        "{out}"
    );
    let all = steps(&out);
    assert_eq!(all.len(), 14, "{out}");
    assert!(all[1].ran(), "the RUN step ran in a container: {out}");
    assert_eq!(
        all[13].title,
        r#"Step 14/14 : CMD ["message.txt", "notes.txt"]"#
    );
    assert!(
        out.ends_with("Successfully tagged app:1\nSuccessfully tagged app:2\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Successfully built {} in ", short(id))),
        "{out}"
    );

    // What a user runs: the entrypoint and command, as nobody, in WORKDIR.
    let run = lab.run(&["run", "--rm", "app:1"]);
    assert_eq!(
        run.ok(),
        "made by the builder stage\nnotes from the context\n"
    );
    let run = lab.run(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "app:2",
        "-c",
        "id -u; id -g; pwd; echo $GREETING $APP_HOME",
    ]);
    assert_eq!(run.ok(), "65534\n65534\n/srv/app\nhello /srv/app\n");

    // The config, as inspect shows it.
    let config = &image["Config"];
    assert_eq!(config["User"], "nobody");
    assert_eq!(config["WorkingDir"], "/srv/app");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{env:?}");
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["message.txt", "notes.txt"])
    );
    let ports: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(
        ports,
        ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
    );
    let volumes: Vec<&String> = config["Volumes"].as_object().unwrap().keys().collect();
    assert_eq!(volumes, ["/data"]);
    assert_eq!(
        config["Labels"],
        serde_json::json!({"org.example.role": "demo", "with space": "a b", "built.by": "the-test"})
    );
    assert_eq!(config["StopSignal"], "SIGUSR1");

    // --target: the builder stage alone; the final stage is skipped.
    let out = lab.build_ok(&[
        "-t",
        "builder-only:1",
        "-f",
        "app.dockerfile",
        "--target",
        "builder",
    ]);
    assert!(
        out.contains("Skipping stage 1 (final): the target does not need it"),
        "{out}"
    );
    assert_eq!(steps(&out).len(), 2, "{out}");
    assert_eq!(
        lab.sh("builder-only:1", "cat /out/message.txt"),
        "made by the builder stage\n"
    );
    lab.setup.assert_nothing_left();
}

#[test]
fn an_entrypoint_resets_the_inherited_cmd_and_stopsignal_is_what_stop_sends() {
    if !support::require_root(
        "an_entrypoint_resets_the_inherited_cmd_and_stopsignal_is_what_stop_sends",
    ) {
        return;
    }
    let lab = Lab::new();
    // busybox's config says Cmd ["sh"]: a new ENTRYPOINT drops it.
    assert_eq!(
        lab.inspect(&lab.base())["Config"]["Cmd"],
        serde_json::json!(["sh"])
    );
    lab.write(
        "entry.dockerfile",
        "FROM {BASE}\nENTRYPOINT [\"echo\", \"entry\"]\n",
    );
    lab.build_ok(&["-t", "entry:1", "-f", "entry.dockerfile"]);
    let config = &lab.inspect("entry:1")["Config"];
    assert!(
        config["Cmd"].is_null() || config["Cmd"] == serde_json::json!([]),
        "{config:#}"
    );
    assert_eq!(lab.run(&["run", "--rm", "entry:1"]).ok(), "entry\n");
    assert_eq!(lab.run(&["run", "--rm", "entry:1", "x"]).ok(), "entry x\n");

    // STOPSIGNAL: `stop` sends it, the trap sees it at once.
    lab.write(
        "stop.dockerfile",
        "FROM {BASE}\nSTOPSIGNAL SIGUSR1\nCMD [\"sh\", \"-c\", \"trap 'echo got usr1; exit 0' USR1; echo ready; while :; do sleep 0.1; done\"]\n",
    );
    lab.build_ok(&["-t", "stop:1", "-f", "stop.dockerfile"]);
    let id = lab.run(&["run", "-d", "stop:1"]).ok().trim().to_string();
    lab.setup
        .wait_for(&["logs", &id], |logs| logs.contains("ready"));
    let started = Instant::now();
    lab.run(&["stop", "-t", "20", &id]).ok();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop waited for the grace period: the image's STOPSIGNAL was not sent"
    );
    assert_eq!(lab.run(&["logs", &id]).ok(), "ready\ngot usr1\n");
    lab.run(&["rm", &id]).ok();
    lab.setup.assert_nothing_left();
}

#[test]
fn args_are_scoped_as_docker_scopes_them_and_stay_out_of_the_image() {
    if !support::require_root("args_are_scoped_as_docker_scopes_them_and_stay_out_of_the_image") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        r#"ARG BASE_IMAGE={BASE}
ARG GLOBAL=global-default
FROM $BASE_IMAGE
RUN echo "before ARG: [$GLOBAL]" > /before
ARG GLOBAL
RUN echo "after ARG: [$GLOBAL]" > /after
ARG STAGE_DEFAULT=stage-default
ARG OVERRIDDEN=from-dockerfile
ARG SHADOWED=from-arg
ENV SHADOWED=from-env
RUN echo "$STAGE_DEFAULT $OVERRIDDEN $SHADOWED" > /values && echo "proxy=[$HTTP_PROXY]" > /proxy
"#,
    );
    let (out, pid) = lab.build_with_pid(&[
        "-t",
        "args:1",
        "--build-arg",
        "OVERRIDDEN=from-cli",
        "--build-arg",
        "NOT_DECLARED=1",
        "--build-arg",
        "HTTP_PROXY=http://proxy.crabbox.test:3128",
    ]);
    out.ok();
    lab.assert_build_left_nothing(pid);
    assert!(
        out.stdout.starts_with("Step 1/9 : FROM $BASE_IMAGE\n"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr,
        "[Warning] One or more build-args [NOT_DECLARED] were not consumed\n"
    );
    assert_eq!(
        lab.sh(
            "args:1",
            "cat /before /after /values /proxy"
        ),
        "before ARG: []\nafter ARG: [global-default]\nstage-default from-cli from-env\nproxy=[http://proxy.crabbox.test:3128]\n"
    );
    // ARG values are not the image's environment; ENV is.
    let env = lab.inspect("args:1")["Config"]["Env"].clone();
    let env: Vec<&str> = env
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"SHADOWED=from-env"), "{env:?}");
    for name in [
        "BASE_IMAGE=",
        "GLOBAL=",
        "STAGE_DEFAULT=",
        "OVERRIDDEN=",
        "HTTP_PROXY=",
        "NOT_DECLARED=",
    ] {
        assert!(
            !env.iter().any(|e| e.starts_with(name)),
            "{name} in {env:?}"
        );
    }
    let in_container = lab.sh("args:1", "env");
    assert!(!in_container.contains("OVERRIDDEN"), "{in_container}");
    // The proxy is nowhere in what the image tells about itself.
    let history = lab.run(&["history", "--no-trunc", "args:1"]);
    assert!(
        history.ok().contains("OVERRIDDEN=from-cli"),
        "{}",
        history.stdout
    );
    assert!(
        !history.stdout.contains("proxy.crabbox.test"),
        "{}",
        history.stdout
    );
    let config = serde_json::to_string(&lab.config_blob("args:1")).unwrap();
    assert!(!config.contains("proxy.crabbox.test"), "{config}");
    lab.setup.assert_nothing_left();
}

#[test]
fn shell_changes_how_run_and_shell_form_cmd_run() {
    if !support::require_root("shell_changes_how_run_and_shell_form_cmd_run") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        r#"FROM {BASE}
RUN false; echo "default shell goes on" > /default
SHELL ["/bin/sh", "-ec"]
RUN echo "$0 [$-]" > /shell
CMD echo "cmd run by $0"
"#,
    );
    lab.build_ok(&["-t", "shell:1"]);
    let flags = lab.sh("shell:1", "cat /default /shell");
    let mut lines = flags.lines();
    assert_eq!(lines.next(), Some("default shell goes on"));
    let shell_line = lines.next().unwrap();
    assert!(
        shell_line.starts_with("/bin/sh [") && shell_line.contains('e'),
        "RUN did not run under `sh -ec`: {shell_line}"
    );
    assert_eq!(
        lab.inspect("shell:1")["Config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-ec", r#"echo "cmd run by $0""#])
    );
    assert_eq!(
        lab.run(&["run", "--rm", "shell:1"]).ok(),
        "cmd run by /bin/sh\n"
    );
    // Under -e, the first failing command fails the step.
    let before = lab.images();
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN false; echo not reached > /x\n",
    );
    let (out, pid) = lab.build_with_pid(&["-t", "shell:2"]);
    let line = out.fails_with(1).to_string();
    assert!(
        line.contains("returned a non-zero code: 1") && line.contains("Dockerfile:3: "),
        "{line}"
    );
    assert_eq!(lab.images(), before);
    lab.assert_build_left_nothing(pid);
}

#[test]
fn heredocs_make_scripts_stdin_and_files() {
    if !support::require_root("heredocs_make_scripts_stdin_and_files") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        "FROM {BASE}
ENV NAME=world
RUN <<EOF
echo line one > /script.out
echo \"hello $NAME\" >> /script.out
EOF
RUN cat <<EOF > /stdin.out
body for $NAME
EOF
RUN <<-EOF
\techo tabs stripped > /tabs.out
\tEOF
RUN cat <<-EOF > /tabs-stdin.out
\tindented
\tEOF
RUN cat <<'EOF' > /quoted.out
literal $NAME
EOF
COPY <<EOF /etc/copied
copied for $NAME
EOF
COPY <<A <<B /multi/
first file
A
second file
B
",
    );
    lab.build_ok(&["-t", "heredocs:1"]);
    let (dir, tree) = lab.unpack("heredocs:1");
    let root = dir.join("rootfs");
    for (path, expected) in [
        ("script.out", "line one\nhello world\n"),
        ("stdin.out", "body for world\n"),
        ("tabs.out", "tabs stripped\n"),
        ("tabs-stdin.out", "indented\n"),
        ("quoted.out", "literal $NAME\n"),
        ("etc/copied", "copied for world\n"),
        ("multi/A", "first file\n"),
        ("multi/B", "second file\n"),
    ] {
        assert_eq!(file_content(&tree, path, &root), expected, "{path}");
    }
    lab.setup.assert_nothing_left();
}

#[test]
fn a_heredoc_with_a_shebang_runs_with_its_interpreter() {
    if !support::require_root("a_heredoc_with_a_shebang_runs_with_its_interpreter") {
        return;
    }
    let lab = Lab::new();
    // awk, not sh, must read this script: sh would fail on its syntax.
    lab.write(
        "Dockerfile",
        "FROM {BASE}
RUN <<EOF
#!/bin/awk -f
BEGIN { print \"awk ran the script\" > \"/awk.out\" }
EOF
RUN <<EOF
#!/bin/sh
echo \"sh ran the script\" > /sh.out
EOF
",
    );
    lab.build_ok(&["-t", "shebang:1"]);
    assert_eq!(
        lab.sh("shebang:1", "cat /awk.out /sh.out"),
        "awk ran the script\nsh ran the script\n"
    );
}

#[test]
fn onbuild_triggers_run_in_the_child_build_once() {
    if !support::require_root("onbuild_triggers_run_in_the_child_build_once") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "parent.dockerfile",
        "FROM {BASE}\nRUN echo parent > /parent\nONBUILD RUN echo triggered >> /t\n",
    );
    lab.build_ok(&["-t", "parent:1", "-f", "parent.dockerfile"]);
    lab.run(&["tag", "parent:1", "onbuild-parent:v2"]).ok();
    assert_eq!(
        lab.inspect("onbuild-parent:v2")["Config"]["OnBuild"],
        serde_json::json!(["RUN echo triggered >> /t"])
    );
    assert_eq!(
        lab.sh("parent:1", "cat /parent; test -e /t && echo t || echo no t"),
        "parent\nno t\n"
    );
    lab.write(
        "child.dockerfile",
        "FROM onbuild-parent:v2\nRUN cp /t /seen-by-child\n",
    );
    lab.build_ok(&["-t", "child:1", "-f", "child.dockerfile"]);
    assert_eq!(
        lab.sh("child:1", "cat /t /seen-by-child"),
        "triggered\ntriggered\n"
    );
    let on_build = &lab.inspect("child:1")["Config"]["OnBuild"];
    assert!(
        on_build.is_null() || on_build == &serde_json::json!([]),
        "the child passes the trigger on: {on_build}"
    );
    // The grandchild does not run it again.
    lab.write("grandchild.dockerfile", "FROM child:1\nRUN echo gc > /gc\n");
    lab.build_ok(&["-t", "grandchild:1", "-f", "grandchild.dockerfile"]);
    assert_eq!(lab.sh("grandchild:1", "cat /t"), "triggered\n");
    lab.setup.assert_nothing_left();
}

#[test]
fn dockerignore_decides_what_copy_dot_sees() {
    if !support::require_root("dockerignore_decides_what_copy_dot_sees") {
        return;
    }
    let lab = Lab::new();
    for file in [
        "a.log",
        "keep.log",
        "sub/b.log",
        "sub/deep/c.log",
        "sub/keep.log",
        "secret/s.txt",
        "sub/secret/n.txt",
        "x.txt",
        "sub/x.txt",
    ] {
        lab.write(file, &format!("{file}\n"));
    }
    lab.write(
        ".dockerignore",
        "# logs, but keep.log; sub/keep.log is in, then out again (last match wins)\n**/*.log\n!keep.log\n!sub/keep.log\nsub/keep.log\n/secret\n",
    );
    lab.write("Dockerfile", "FROM {BASE}\nCOPY . /ctx/\n");
    let listing = "cd /ctx && find . | sort";
    lab.build_ok(&["-t", "ignored:1"]);
    assert_eq!(
        lab.sh("ignored:1", listing),
        ".\n./.dockerignore\n./Dockerfile\n./keep.log\n./sub\n./sub/deep\n./sub/secret\n./sub/secret/n.txt\n./sub/x.txt\n./x.txt\n"
    );
    // app.dockerfile.dockerignore, beside -f app.dockerfile, replaces
    // CONTEXT/.dockerignore.
    lab.write("app.dockerfile", "FROM {BASE}\nCOPY . /ctx/\n");
    lab.write("app.dockerfile.dockerignore", "*.txt\nsub/deep\n");
    lab.build_ok(&["-t", "ignored:2", "-f", "app.dockerfile"]);
    assert_eq!(
        lab.sh("ignored:2", listing),
        ".\n./.dockerignore\n./Dockerfile\n./a.log\n./app.dockerfile\n./app.dockerfile.dockerignore\n./keep.log\n./secret\n./secret/s.txt\n./sub\n./sub/b.log\n./sub/keep.log\n./sub/secret\n./sub/secret/n.txt\n./sub/x.txt\n"
    );
    lab.setup.assert_nothing_left();
}

const CACHE_DOCKERFILE: &str = r#"FROM {BASE}
ENV E=1
COPY other.txt /other
RUN echo first > /first
COPY src.txt /src
RUN cat /src > /copy-of-src
CMD ["cat", "/copy-of-src"]
"#;

#[test]
fn the_cache_reuses_what_did_not_change_and_nothing_after_what_did() {
    if !support::require_root("the_cache_reuses_what_did_not_change_and_nothing_after_what_did") {
        return;
    }
    let lab = Lab::new();
    lab.write("other.txt", "other\n");
    lab.write("src.txt", "version 1\n");
    lab.write("Dockerfile", CACHE_DOCKERFILE);
    let first = steps(&lab.build_ok(&["-t", "cached:1"]));
    assert_eq!(first.len(), 7);
    assert!(!first.iter().any(Step::cached), "{}", summary(&first));
    let layers = lab.inspect("cached:1")["RootFS"]["Layers"].clone();

    // Nothing changed: every step after FROM is CACHED, same layers.
    let again = steps(&lab.build_ok(&["-t", "cached:1"]));
    assert!(!again[0].cached());
    assert!(again[1..].iter().all(Step::cached), "{}", summary(&again));
    assert!(!again.iter().any(Step::ran), "{}", summary(&again));
    assert_eq!(lab.inspect("cached:1")["RootFS"]["Layers"], layers);

    // A new mtime alone is no change.
    let src = lab.ctx.join("src.txt");
    let file = fs::File::options().write(true).open(&src).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(file);
    let touched = steps(&lab.build_ok(&["-t", "cached:1"]));
    assert!(
        touched[1..].iter().all(Step::cached),
        "{}",
        summary(&touched)
    );
    assert_eq!(lab.inspect("cached:1")["RootFS"]["Layers"], layers);

    // New content: that COPY and everything after it, not before.
    lab.write("src.txt", "version 2\n");
    let changed = steps(&lab.build_ok(&["-t", "cached:2"]));
    let cached: Vec<bool> = changed.iter().map(Step::cached).collect();
    assert_eq!(
        cached,
        [false, true, true, true, false, false, false],
        "{}",
        summary(&changed)
    );
    assert!(changed[5].ran(), "{}", summary(&changed));
    assert_eq!(lab.run(&["run", "--rm", "cached:2"]).ok(), "version 2\n");
    let new_layers = lab.inspect("cached:2")["RootFS"]["Layers"].clone();
    assert_eq!(
        new_layers.as_array().unwrap()[..3],
        layers.as_array().unwrap()[..3],
        "the layers before the change"
    );
    assert_ne!(new_layers[3], layers[3], "the COPY of the new content");

    // --no-cache: everything again.
    let out = lab.build_ok(&["-t", "cached:3", "--no-cache"]);
    assert!(!out.contains("CACHED"), "{out}");
    assert!(steps(&out)[3].ran() && steps(&out)[5].ran(), "{out}");
    assert_eq!(lab.run(&["run", "--rm", "cached:3"]).ok(), "version 2\n");

    // builder prune forgets it all.
    lab.run(&["builder", "prune", "-f"]).ok();
    let out = lab.build_ok(&["-t", "cached:4"]);
    assert!(!out.contains("CACHED"), "{out}");
    assert_eq!(lab.run(&["run", "--rm", "cached:4"]).ok(), "version 2\n");
    lab.setup.assert_nothing_left();
}

#[test]
fn a_new_build_arg_value_rebuilds_from_the_first_run_that_sees_it() {
    if !support::require_root("a_new_build_arg_value_rebuilds_from_the_first_run_that_sees_it") {
        return;
    }
    let lab = Lab::new();
    lab.write("other.txt", "other\n");
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nARG V=1\nENV E=1\nCOPY other.txt /other\nRUN echo \"first sees V=$V\" > /first\nRUN echo second > /second\n",
    );
    lab.build_ok(&["-t", "arg:1"]);
    let out = lab.build_ok(&["-t", "arg:2", "--build-arg", "V=2"]);
    let changed = steps(&out);
    let cached: Vec<bool> = changed.iter().map(Step::cached).collect();
    assert_eq!(
        cached,
        [false, true, true, true, false, false],
        "ARG, ENV and the COPY do not depend on V's value; the RUNs do:\n{}",
        summary(&changed)
    );
    assert_eq!(lab.sh("arg:2", "cat /first"), "first sees V=2\n");
    let again = steps(&lab.build_ok(&["-t", "arg:2", "--build-arg", "V=2"]));
    assert!(again[1..].iter().all(Step::cached), "{}", summary(&again));
}

#[test]
fn quiet_prints_only_the_image_id_and_tag_names_the_image() {
    if !support::require_root("quiet_prints_only_the_image_id_and_tag_names_the_image") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nRUN echo noise from the step; echo more noise >&2\nCMD [\"echo\", \"quiet image\"]\n",
    );
    let out = lab.build_ok(&["-q", "-t", "quiet:1"]);
    let id = lab.inspect("quiet:1")["Id"].as_str().unwrap().to_string();
    assert_eq!(out, format!("{id}\n"));
    assert_eq!(id.len(), 71, "{id}");
    lab.run(&["tag", "quiet:1", "other/name:2"]).ok();
    assert_eq!(
        lab.run(&["run", "--rm", "other/name:2"]).ok(),
        "quiet image\n"
    );
    assert_eq!(lab.inspect("other/name:2")["Id"], id.as_str());
    // Without -q the step's output is there, each line after its step's
    // prefix, stdout and stderr alike; a failing step under -q shows it.
    let out = lab.build_ok(&["--no-cache", "-t", "quiet:1"]);
    assert!(out.contains("\n 2/3 | noise from the step\n"), "{out}");
    assert!(out.contains("\n 2/3 | more noise\n"), "{out}");
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nRUN echo why it failed; exit 4\n",
    );
    let failed = lab.build(&["-q"]);
    assert_eq!(failed.code, 4, "{}", failed.stderr);
    assert!(failed.stdout.is_empty(), "{}", failed.stdout);
    assert!(
        failed.stderr.contains("why it failed\n"),
        "{}",
        failed.stderr
    );
}

#[test]
fn a_deleted_file_is_a_whiteout_and_a_step_that_changes_nothing_has_no_layer() {
    if !support::require_root(
        "a_deleted_file_is_a_whiteout_and_a_step_that_changes_nothing_has_no_layer",
    ) {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nRUN rm /etc/group && echo x > /newfile\nRUN true\nWORKDIR /tmp\nENV A=1\n",
    );
    let out = lab.build_ok(&["-t", "whiteout:1"]);
    let all = steps(&out);
    assert!(
        all[2]
            .lines
            .iter()
            .any(|l| l.starts_with(" ---> no files changed")),
        "{out}"
    );
    let layers = lab.layers("whiteout:1");
    assert_eq!(
        layers.len(),
        2,
        "the base's layer and the RUN's: {layers:#?}"
    );
    let names: Vec<&str> = layers[1].1.iter().map(|e| e.path.as_str()).collect();
    assert!(names.contains(&"etc/.wh.group"), "{names:?}");
    assert!(names.contains(&"newfile"), "{names:?}");
    assert!(!names.contains(&"etc/group"), "{names:?}");
    let whiteout = layers[1]
        .1
        .iter()
        .find(|e| e.path == "etc/.wh.group")
        .unwrap();
    assert_eq!((whiteout.kind, whiteout.size), (tar::EntryType::Regular, 0));

    // The config: one history line per instruction, `empty_layer` where
    // no layer was made, as many layers as non-empty lines.
    let config = lab.config_blob("whiteout:1");
    let history = config["history"].as_array().unwrap();
    let base_history = lab.config_blob(&lab.base())["history"]
        .as_array()
        .unwrap()
        .len();
    let ours: Vec<(String, bool)> = history[base_history..]
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(ours.len(), 4, "{ours:?}");
    assert!(
        ours[0].0.contains("rm /etc/group") && !ours[0].1,
        "{ours:?}"
    );
    assert!(ours[1].0.contains("true") && ours[1].1, "{ours:?}");
    assert!(ours[2].0.contains("WORKDIR /tmp") && ours[2].1, "{ours:?}");
    assert!(ours[3].0.contains("ENV A=1") && ours[3].1, "{ours:?}");
    let non_empty = history
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count();
    assert_eq!(
        non_empty,
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
    assert_eq!(
        lab.sh(
            "whiteout:1",
            "test -e /etc/group && echo group || echo no group; cat /newfile"
        ),
        "no group\nx\n"
    );
}

/// Paths a RUN's mounts need and no layer may carry unless the base had
/// them: the stubs of chapter 3's mount points.
fn is_stub(path: &str) -> bool {
    ["etc/hostname", "etc/hosts", "etc/resolv.conf"].contains(&path)
        || ["proc", "sys", "dev"]
            .iter()
            .any(|d| path == *d || path.starts_with(&format!("{d}/")))
}

#[test]
fn no_layer_carries_the_mount_points_of_a_run_step() {
    if !support::require_root("no_layer_carries_the_mount_points_of_a_run_step") {
        return;
    }
    let lab = Lab::new();
    // The base has /proc, /sys and /dev, no /etc/hosts, hostname or
    // resolv.conf: a layer holding one of those made it up.
    let (_dir, base) = lab.unpack(&lab.base());
    for path in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        assert!(!base.contains_key(path), "the fixture has {path}");
    }
    for path in ["proc", "sys", "dev", "etc/passwd"] {
        assert!(base.contains_key(path), "the fixture lacks {path}");
    }
    fs::copy("/bin/busybox", lab.ctx.join("busybox")).expect("busybox-static on the host");
    lab.write("hello.txt", "hello\n");
    lab.write(
        "scratch.dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY hello.txt /hello.txt\n",
    );
    lab.write(
        "scratch-run.dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo ran > /ran\"]\n",
    );
    lab.write(
        "busybox-run.dockerfile",
        "FROM {BASE}\nRUN echo 'extra:x:1:' >> /etc/group\nRUN mkdir /work && echo w > /work/w\nRUN cat /etc/hosts /etc/resolv.conf /etc/hostname > /seen\n",
    );
    let base_layer = lab.inspect(&lab.base())["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let mut problems = Vec::new();
    for (name, scratch) in [
        ("scratch", true),
        ("scratch-run", true),
        ("busybox-run", false),
    ] {
        let image = format!("{name}:1");
        lab.build_ok(&["-t", &image, "-f", &format!("{name}.dockerfile")]);
        for (diff_id, entries) in lab.layers(&image) {
            if diff_id == base_layer {
                continue;
            }
            for entry in entries {
                if is_stub(&entry.path) || (scratch && entry.path.starts_with("etc")) {
                    problems.push(format!("{image}: layer {diff_id} has {}", entry.path));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let (dir, tree) = lab.unpack("scratch-run:1");
    assert_eq!(file_content(&tree, "ran", &dir.join("rootfs")), "ran\n");
    let keys: Vec<&String> = tree.keys().collect();
    assert_eq!(keys, ["bin", "bin/busybox", "ran"]);
    lab.setup.assert_nothing_left();
}

#[test]
fn a_renamed_directory_unpacks_as_umoci_unpacks_it() {
    if !support::require_root("a_renamed_directory_unpacks_as_umoci_unpacks_it") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        "FROM {BASE}
RUN mkdir -p /usr/share/udhcpc/sub && echo s > /usr/share/udhcpc/default.script && echo n > /usr/share/udhcpc/sub/n && ln -s default.script /usr/share/udhcpc/link
RUN mv /usr/share/udhcpc /usr/share/dhcp && echo added > /usr/share/dhcp/added && rm /usr/share/dhcp/sub/n && mv /root /root2 && rm /etc/group
",
    );
    lab.build_ok(&["-t", "renamed:1"]);
    let (ours_dir, ours) = lab.unpack("renamed:1");
    assert!(!ours.contains_key("usr/share/udhcpc"), "{ours:#?}");
    assert!(!ours.contains_key("root"), "{ours:#?}");
    assert_eq!(
        file_content(
            &ours,
            "usr/share/dhcp/default.script",
            &ours_dir.join("rootfs")
        ),
        "s\n"
    );
    assert!(ours.contains_key("root2") && ours.contains_key("usr/share/dhcp/sub"));

    // The same image read by independent tools: pushed to a registry,
    // copied by skopeo into an OCI layout, unpacked by umoci.
    let storage = TempDir::new("ch05-push-registry");
    let registry = Registry::start(storage.path(), false, RegistryAuth::None);
    let target = format!("{}/renamed:1", registry.addr());
    lab.run(&["tag", "renamed:1", &target]).ok();
    lab.run(&["push", &target]).ok();
    let work = TempDir::new("ch05-umoci");
    let copied = sh(&format!(
        "skopeo copy --src-tls-verify=false docker://{target} oci:{}:renamed",
        work.join("oci").display()
    ));
    assert_eq!(copied.code, 0, "skopeo: {}", copied.stderr);
    let unpacked = sh(&format!(
        "umoci unpack --image {}:renamed {}",
        work.join("oci").display(),
        work.join("bundle").display()
    ));
    assert_eq!(unpacked.code, 0, "umoci: {}", unpacked.stderr);
    let theirs = snapshot(&work.join("bundle/rootfs"));
    assert_same_tree(&ours, &theirs, "our unpack against umoci's");
    drop(registry);
    lab.setup.assert_nothing_left();
}

#[test]
fn copy_and_add_put_in_the_image_what_docker_would() {
    if !support::require_root("copy_and_add_put_in_the_image_what_docker_would") {
        return;
    }
    let lab = Lab::new();
    lab.write("a.txt", "a\n");
    lab.write("b.txt", "b\n");
    lab.write("c.md", "c\n");
    lab.write("dir/d1", "d1\n");
    lab.write("dir/inner/i", "i\n");
    lab.write("plain.bin", "plain\n");
    symlink("a.txt", lab.ctx.join("link")).unwrap();
    let archived = TempDir::new("ch05-archive");
    fs::write(archived.join("inside.txt"), "inside\n").unwrap();
    fs::create_dir(archived.join("sub")).unwrap();
    fs::write(archived.join("sub/s"), "s\n").unwrap();
    for (name, flag) in [
        ("archive.tar.gz", "z"),
        ("archive.tar.bz2", "j"),
        ("archive.tar.xz", "J"),
        ("archive.tar", ""),
    ] {
        let made = sh(&format!(
            "tar -C {} -c{flag}f {} .",
            archived.path().display(),
            lab.ctx.join(name).display()
        ));
        assert_eq!(made.code, 0, "{}", made.stderr);
    }
    lab.write(
        "Dockerfile",
        "FROM {BASE}
RUN echo 'appuser:x:1234:4321::/:/bin/sh' >> /etc/passwd && echo 'appgroup:x:4321:' >> /etc/group
COPY *.txt /glob/
COPY dir /contents/
COPY --chown=nobody:nobody a.txt /owned/by-nobody
COPY --chown=appuser:appgroup a.txt /owned/by-appuser
COPY --chmod=0700 b.txt /mode/b
COPY link /links/
ADD archive.tar.gz /gz/
ADD archive.tar.bz2 /bz2/
ADD archive.tar.xz /xz/
ADD archive.tar /tar/
ADD plain.bin /plain/
",
    );
    lab.build_ok(&["-t", "copied:1"]);
    let (dir, tree) = lab.unpack("copied:1");
    let root = dir.join("rootfs");
    let under = |prefix: &str| -> Vec<String> {
        tree.keys()
            .filter(|k| k.starts_with(&format!("{prefix}/")))
            .cloned()
            .collect()
    };
    assert_eq!(under("glob"), ["glob/a.txt", "glob/b.txt"]);
    assert_eq!(file_content(&tree, "glob/a.txt", &root), "a\n");
    assert_eq!(
        under("contents"),
        ["contents/d1", "contents/inner", "contents/inner/i"]
    );
    let owner = |path: &str| {
        let node = &tree[path];
        (node.uid, node.gid)
    };
    assert_eq!(owner("owned/by-nobody"), (65534, 65534));
    assert_eq!(owner("owned/by-appuser"), (1234, 4321));
    assert_eq!(owner("glob/a.txt"), (0, 0));
    assert_eq!(tree["mode/b"].mode, 0o700);
    assert_eq!(
        tree["links/link"].kind,
        Kind::Symlink {
            target: "a.txt".into()
        }
    );
    for dir in ["gz", "bz2", "xz", "tar"] {
        assert_eq!(
            under(dir),
            [
                format!("{dir}/inside.txt"),
                format!("{dir}/sub"),
                format!("{dir}/sub/s")
            ],
            "ADD of an archive extracts it"
        );
        assert_eq!(file_content(&tree, &format!("{dir}/sub/s"), &root), "s\n");
    }
    assert_eq!(under("plain"), ["plain/plain.bin"]);
    assert_eq!(file_content(&tree, "plain/plain.bin", &root), "plain\n");
    lab.setup.assert_nothing_left();
}

#[test]
fn copy_to_a_path_through_an_absolute_symlink_stays_in_the_image() {
    if !support::require_root("copy_to_a_path_through_an_absolute_symlink_stays_in_the_image") {
        return;
    }
    let lab = Lab::new();
    let real = format!("/etc/crabbox-real-{}", std::process::id());
    assert!(!Path::new(&real).exists(), "{real} exists on the host");
    lab.write(
        "base.dockerfile",
        &format!(
            "FROM {{BASE}}\nRUN mkdir -p /etc/conf.d {real} && ln -s {real}/default /etc/conf.d/default && ln -s {real} /etc/conf.d/dirlink\n"
        ),
    );
    lab.build_ok(&["-t", "linked-base:1", "-f", "base.dockerfile"]);
    lab.write("default.conf", "from the context\n");
    lab.write(
        "child.dockerfile",
        "FROM linked-base:1\nCOPY default.conf /etc/conf.d/dirlink/via-dir\nADD default.conf /etc/conf.d/dirlink/added\nCOPY default.conf /etc/conf.d/default\n",
    );
    let out = lab.build(&["-t", "linked:1", "-f", "child.dockerfile"]);
    assert!(
        !Path::new(&real).exists(),
        "the build wrote {real} on the host"
    );
    out.ok();
    let (dir, tree) = lab.unpack("linked:1");
    let root = dir.join("rootfs");
    let real_rel = real.trim_start_matches('/');
    for name in ["via-dir", "added"] {
        assert_eq!(
            file_content(&tree, &format!("{real_rel}/{name}"), &root),
            "from the context\n"
        );
    }
    // The link is followed inside the image: the file lands at its target
    // and the link stays (as buildkit's copy resolves the destination).
    assert_eq!(
        tree["etc/conf.d/default"].kind,
        Kind::Symlink {
            target: format!("{real}/default").into()
        },
        "the symlink was replaced"
    );
    assert_eq!(
        file_content(&tree, &format!("{real_rel}/default"), &root),
        "from the context\n"
    );
}

/// A refused build: what it is, the Dockerfile, more flags, the exit
/// code, what the error line must hold.
type Refusal<'a> = (&'a str, &'a str, &'a [&'a str], i32, &'a [&'a str]);

#[test]
fn bad_input_is_one_line_with_its_place_and_leaves_nothing() {
    if !support::require_root("bad_input_is_one_line_with_its_place_and_leaves_nothing") {
        return;
    }
    let lab = Lab::new();
    lab.write("ok.txt", "ok\n");
    fs::write(lab.dir.join("secret"), "secret\n").unwrap();
    symlink("/etc", lab.ctx.join("hostdir")).unwrap();
    let mut problems = Vec::new();
    let cases: &[Refusal] = &[
        (
            "unknown instruction",
            "FROM {BASE}\nCOPPY ok.txt /\n",
            &[],
            125,
            &["build: app.dockerfile:2: unknown instruction: COPPY (did you mean COPY?)"],
        ),
        (
            "unterminated heredoc",
            "FROM {BASE}\nRUN <<EOF\necho hi\n",
            &[],
            125,
            &["app.dockerfile:2: ", "heredoc", "EOF"],
        ),
        (
            "required variable",
            "FROM {BASE}\nWORKDIR /${x:?must be set}\n",
            &[],
            125,
            &["app.dockerfile:2: ", "must be set"],
        ),
        (
            "no FROM",
            "RUN echo hi\n",
            &[],
            125,
            &["app.dockerfile:1: ", "FROM"],
        ),
        (
            "a stage used before it is defined",
            "FROM {BASE} AS first\nCOPY --from=later /x /x\nFROM {BASE} AS later\nRUN touch /x\n",
            &["--target", "first"],
            125,
            &["app.dockerfile:2: ", "later"],
        ),
        (
            "an unknown target",
            "FROM {BASE} AS first\nRUN true\n",
            &["--target", "nope"],
            125,
            &["nope"],
        ),
        (
            "a missing COPY source",
            "FROM {BASE}\nCOPY x /x\n",
            &[],
            125,
            &["build: app.dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore: x"],
        ),
        (
            "a source outside the context",
            "FROM {BASE}\nCOPY ../secret /x\n",
            &[],
            125,
            &["app.dockerfile:2: ", "outside the build context", "../secret"],
        ),
        (
            "a source through a symlink leaving the context",
            "FROM {BASE}\nCOPY hostdir/passwd /x\n",
            &[],
            125,
            &["app.dockerfile:2: ", "hostdir"],
        ),
        (
            "an unknown --chown user",
            "FROM {BASE}\nCOPY --chown=nosuchuser ok.txt /x\n",
            &[],
            125,
            &["app.dockerfile:2: ", "nosuchuser"],
        ),
        (
            "ADD of a URL",
            "FROM {BASE}\nADD http://127.0.0.1:9/x /x\n",
            &[],
            125,
            &["app.dockerfile:2: ", "ADD from a URL is not supported here"],
        ),
        (
            "several sources, no directory",
            "FROM {BASE}\nCOPY ok.txt app.dockerfile /dir\n",
            &[],
            125,
            &["app.dockerfile:2: ", "When using COPY with more than one source file, the destination must be a directory and end with a /"],
        ),
        (
            "a failing RUN",
            "FROM {BASE}\nRUN echo going; exit 3\n",
            &[],
            3,
            &["build: app.dockerfile:2: The command '/bin/sh -c echo going; exit 3' returned a non-zero code: 3"],
        ),
    ];
    for (case, dockerfile, args, code, expected) in cases {
        problems.extend(lab.refused(case, dockerfile, args, *code, expected));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_hostile_tar_in_the_context_writes_nothing_outside_the_image() {
    if !support::require_root("a_hostile_tar_in_the_context_writes_nothing_outside_the_image") {
        return;
    }
    let lab = Lab::new();
    let host = TempDir::new("ch05-host");
    let target = |n: u32| host.join(format!("escape-{n}"));
    let climb = format!("../../../../../../../../../..{}", target(1).display());
    let climbing = LayerTar::new()
        .file("ok", b"fine\n")
        .file(&climb, b"pwned\n")
        .into_bytes();
    let through_link = LayerTar::new()
        .file("ok", b"fine\n")
        .symlink("link", target(2).to_str().unwrap())
        .file("link/pwned", b"pwned\n")
        .symlink("dirlink", host.path().to_str().unwrap())
        .file("dirlink/escape-3", b"pwned\n")
        .into_bytes();
    fs::write(lab.ctx.join("climbing.tar"), climbing).unwrap();
    fs::write(lab.ctx.join("through-link.tar"), through_link).unwrap();
    for name in ["climbing", "through-link"] {
        let before = lab.images();
        lab.write(
            &format!("{name}.dockerfile"),
            &format!("FROM {{BASE}}\nADD {name}.tar /x/\n"),
        );
        let (out, pid) = lab.build_with_pid(&[
            "-t",
            &format!("{name}:1"),
            "-f",
            &format!("{name}.dockerfile"),
        ]);
        for n in 1..=3 {
            assert!(
                !target(n).exists(),
                "{name}: the build wrote {} on the host",
                target(n).display()
            );
        }
        let left: Vec<_> = fs::read_dir(host.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{name}: {left:?}");
        if out.code == 0 {
            // Contained: what the tar says is in the image, under /x.
            assert_eq!(lab.sh(&format!("{name}:1"), "cat /x/ok"), "fine\n");
        } else {
            let line = out.fails_with(125).to_string();
            assert!(
                line.starts_with(&format!("build: {name}.dockerfile:2: ")),
                "{line}"
            );
            assert_eq!(lab.images(), before);
        }
        lab.assert_build_left_nothing(pid);
    }
}

/// A build process, and the processes of its RUN steps, killed when
/// dropped (a test that fails does not leave them running).
struct KillOnDrop {
    child: Child,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in processes_of_build(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn a_build_killed_during_a_run_leaves_nothing_the_next_build_does_not_clear() {
    if !support::require_root(
        "a_build_killed_during_a_run_leaves_nothing_the_next_build_does_not_clear",
    ) {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nRUN touch /tmp/started && sleep 30\n",
    );
    let mut command = lab
        .setup
        .engine
        .command(BIN, &["build", "-t", "killed:1", "."]);
    command
        .current_dir(&lab.ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut build = KillOnDrop {
        child: command.spawn().unwrap(),
    };
    let pid = build.child.id();
    let workspace = lab.root().join("builds").join(pid.to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = loop {
        let marker = fs::read_dir(&workspace)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("upper/tmp/started"))
            .find(|p| p.exists());
        if let Some(marker) = marker {
            break marker;
        }
        assert!(
            build.child.try_wait().unwrap().is_none(),
            "the build ended before its RUN started"
        );
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The step's process runs, in the build's cgroup.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleepers = loop {
        let sleepers: Vec<i32> = processes_of_build(pid)
            .into_iter()
            .filter(|p| cmdline(*p).starts_with("sleep 30"))
            .collect();
        if !sleepers.is_empty() {
            break sleepers;
        }
        assert!(Instant::now() < deadline, "no `sleep 30` in build-{pid}-*");
        std::thread::sleep(Duration::from_millis(20));
    };
    build.child.kill().unwrap();
    build.child.wait().unwrap();
    assert!(started.starts_with(&workspace));

    // The step's process goes with the build.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<i32> = sleepers
            .iter()
            .copied()
            .filter(|p| cmdline(*p).starts_with("sleep 30"))
            .chain(processes_of_build(pid))
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the RUN's processes outlived the killed build: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        mounts_under(lab.root()),
        Vec::<String>::new(),
        "mounts left"
    );

    // The next build works and clears what the killed one left.
    lab.write("Dockerfile", "FROM {BASE}\nRUN echo after > /after\n");
    let (out, next) = lab.build_with_pid(&["-t", "after:1"]);
    out.ok();
    assert!(
        !workspace.exists(),
        "{} is still there",
        workspace.display()
    );
    assert_eq!(
        build_cgroups(pid),
        Vec::<PathBuf>::new(),
        "cgroups of the killed build"
    );
    lab.assert_build_left_nothing(next);
    assert_eq!(lab.sh("after:1", "cat /after"), "after\n");
    assert!(
        !lab.images().iter().any(|i| i.starts_with("killed ")),
        "{:?}",
        lab.images()
    );
}

/// A capability set from /proc/PID/status, as a number.
fn caps(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn a_run_step_is_a_container_on_the_hosts_network() {
    if !support::require_root("a_run_step_is_a_container_on_the_hosts_network") {
        return;
    }
    let lab = Lab::new();
    lab.write(
        "Dockerfile",
        r#"FROM {BASE}
RUN cat /proc/self/status > /status; for f in /proc/kcore /proc/timer_list /proc/keys; do if [ -e $f ]; then echo "$f $(head -c 64 $f 2>/dev/null | wc -c)"; else echo "$f absent"; fi; done > /masked; cp /etc/resolv.conf /resolv.copy; ls /sys/class/net > /links
"#,
    );
    lab.build_ok(&["-t", "inside:1"]);
    let (dir, tree) = lab.unpack("inside:1");
    let root = dir.join("rootfs");
    let status = file_content(&tree, "status", &root);
    let host = fs::read_to_string("/proc/self/status").unwrap();
    let (bounding, host_bounding) = (caps(&status, "CapBnd"), caps(&host, "CapBnd"));
    assert_ne!(
        bounding, host_bounding,
        "the RUN kept the host's capabilities"
    );
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_SYS_MODULE: u32 = 16;
    const CAP_SYS_PTRACE: u32 = 19;
    const CAP_NET_ADMIN: u32 = 12;
    for cap in [CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_NET_ADMIN] {
        assert_eq!(
            bounding & (1 << cap),
            0,
            "capability {cap} in CapBnd {bounding:x}"
        );
    }
    assert_eq!(bounding, 0xa80425fb, "docker's default set: {bounding:x}");
    assert_eq!(caps(&status, "CapEff"), 0xa80425fb);
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
        "no seccomp filter: {status}"
    );
    // Masked /proc files read as nothing (those the host has).
    let masked = file_content(&tree, "masked", &root);
    for line in masked.lines() {
        let (path, read) = line.split_once(' ').unwrap();
        if Path::new(path).exists() && read != "absent" {
            assert_eq!(read, "0", "{path} is readable in a RUN: {masked}");
        }
    }
    let mut host_timer_list = Vec::new();
    fs::File::open("/proc/timer_list")
        .unwrap()
        .take(64)
        .read_to_end(&mut host_timer_list)
        .unwrap();
    assert!(
        !host_timer_list.is_empty(),
        "the host's timer_list is empty: no proof"
    );
    assert!(masked.contains("/proc/timer_list 0\n"), "{masked}");

    // The network is the host's: its resolv.conf and its interfaces.
    assert_eq!(
        file_content(&tree, "resolv.copy", &root),
        fs::read_to_string("/etc/resolv.conf").unwrap()
    );
    let mut host_links: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host_links.sort();
    let links: Vec<String> = file_content(&tree, "links", &root)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(links, host_links);

    // A node of the host's disk can be made, not read.
    let disk = LoopDevice::new();
    lab.write(
        "Dockerfile",
        &format!("FROM {{BASE}}\nRUN {}\n", disk.mknod_and_read("/tmp/disk")),
    );
    let (out, pid) = lab.build_with_pid(&["-t", "disk:1", "--no-cache"]);
    assert_ne!(
        out.code, 0,
        "reading the host's disk worked:\n{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&disk.secret) && !out.stderr.contains(&disk.secret),
        "the host's disk was read:\n{}{}",
        out.stdout,
        out.stderr
    );
    lab.assert_build_left_nothing(pid);
}

#[test]
fn device_nodes_and_fifos_made_by_a_step_are_in_its_layer() {
    if !support::require_root("device_nodes_and_fifos_made_by_a_step_are_in_its_layer") {
        return;
    }
    let lab = Lab::new();
    // docker's default capabilities include CAP_MKNOD: a RUN may make
    // nodes (using one is the devices cgroup's business, not the layer's).
    lab.write(
        "Dockerfile",
        "FROM {BASE}\nRUN mkfifo /pipe && mknod /null-copy c 1 3\n",
    );
    lab.build_ok(&["-t", "special:1"]);
    let layers = lab.layers("special:1");
    let (_, top) = layers.last().unwrap();
    let kind = |name: &str| {
        top.iter()
            .find(|e| e.path.trim_end_matches('/') == name)
            .map(|e| e.kind)
            .unwrap_or_else(|| panic!("{name} is not in the layer"))
    };
    assert_eq!(kind("pipe"), tar::EntryType::Fifo);
    assert_eq!(kind("null-copy"), tar::EntryType::Char);
    // And it unpacks and runs: the nodes are there, as they were made.
    let out = lab.sh("special:1", "ls -l /pipe /null-copy");
    assert!(out.contains("prw"), "{out}");
    assert!(out.contains("crw") && out.contains("1,   3"), "{out}");
}
