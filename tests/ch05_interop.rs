//! Chapter 05 against the real tools: an image we build is an image others
//! read, and an image buildah builds from the same Dockerfile is the same
//! image as ours.
//!
//! * ours → push → `skopeo copy` to an OCI layout → `umoci unpack` →
//!   `runc run`: the container prints what the Dockerfile put there;
//! * the same Dockerfile → `buildah bud --layers --isolation chroot` →
//!   `buildah push` → our pull: the same root filesystem tree (mtimes
//!   aside) and the same config fields as ours.
//!
//! The Dockerfile has no heredocs: Debian 12's buildah (1.28) has none.

use std::path::Path;
use support::layers::{assert_same_tree, snapshot, snapshot_with, SnapshotOptions};
use support::{fixtures, require_root, sh, Engine, Registry, RegistryAuth, TempDir};

const BIN: &str = "ch05-dockerfile";

/// Steps of every kind, and a RUN that deletes a base file and renames a
/// directory of a lower layer (a whiteout, and a directory copied up whole).
fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
ARG GREETING=hello
ENV APP_HOME=/app MODE=test
WORKDIR /app
COPY greeting.txt notes/ ./
RUN mkdir -p /srv/site/pages && echo index > /srv/site/pages/index.html
RUN echo "$GREETING from RUN" > /app/greeting && rm /bin/vi \
 && mv /srv/site /srv/www && chmod 700 /app/a.txt
USER nobody
EXPOSE 80 53/udp
VOLUME /data
LABEL org.example.course=crabbox
STOPSIGNAL SIGINT
ENTRYPOINT ["cat"]
CMD ["/app/greeting"]
"#
    )
}

fn write_context(dir: &Path, base: &str) {
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(dir.join("greeting.txt"), "hi\n").unwrap();
    std::fs::write(dir.join("notes/a.txt"), "a\n").unwrap();
    std::fs::write(dir.join("notes/b.txt"), "b\n").unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile(base)).unwrap();
}

fn tool(name: &str) -> bool {
    let found = sh(&format!("command -v {name}")).code == 0;
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed: scripts/setup installs it"
        );
        eprintln!("SKIPPED: {name} is not installed (scripts/setup installs it)");
    }
    found
}

/// buildah with settings of its own, its storage in `dir`.
fn buildah(dir: &Path, args: &str) -> support::Run {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("registries.conf"), "").unwrap();
    std::fs::write(dir.join("auth.json"), "{}").unwrap();
    sh(&format!(
        "env CONTAINERS_REGISTRIES_CONF={d}/registries.conf REGISTRY_AUTH_FILE={d}/auth.json \
         TMPDIR={d}/tmp BUILDAH_ISOLATION=chroot \
         buildah --root {d}/root --runroot {d}/run --storage-driver vfs {args}",
        d = dir.display()
    ))
}

fn config(engine: &Engine, image: &str) -> serde_json::Value {
    let out = engine.run(BIN, &["inspect", image]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    json[0]["Config"].clone()
}

#[test]
fn our_image_runs_in_runc_after_skopeo_and_umoci() {
    if !require_root("our_image_runs_in_runc_after_skopeo_and_umoci") {
        return;
    }
    if !(tool("skopeo") && tool("umoci") && tool("runc")) {
        return;
    }
    let fixture_registry = Registry::serve_fixtures(&fixtures().registry_storage());
    let storage = TempDir::new("interop-registry");
    let writable = Registry::start(storage.path(), false, RegistryAuth::None);
    let engine = Engine::new();
    let context = TempDir::new("interop-context");
    write_context(
        context.path(),
        &format!("{}/busybox", fixture_registry.addr()),
    );
    let name = format!("{}/ours:1", writable.addr());
    engine
        .run(
            BIN,
            &["build", "-q", "-t", &name, context.path().to_str().unwrap()],
        )
        .ok();
    engine.run(BIN, &["push", &name]).ok();

    let work = TempDir::new("interop-oci");
    let copy = sh(&format!(
        "skopeo --policy <(echo '{{\"default\":[{{\"type\":\"insecureAcceptAnything\"}}]}}') \
         copy --src-tls-verify=false docker://{name} oci:{}/layout:ours",
        work.path().display()
    ));
    assert_eq!(copy.code, 0, "skopeo copy: {}", copy.stderr);
    let unpack = sh(&format!(
        "umoci unpack --image {w}/layout:ours {w}/bundle",
        w = work.path().display()
    ));
    assert_eq!(unpack.code, 0, "umoci unpack: {}", unpack.stderr);
    // umoci writes the image's config as the runtime's: user, cwd, env,
    // args. Only the terminal is ours to change (no TTY in a test).
    let config_path = work.join("bundle/config.json");
    let mut runtime: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(
        runtime["process"]["args"],
        serde_json::json!(["cat", "/app/greeting"])
    );
    assert_eq!(runtime["process"]["cwd"], "/app");
    assert_eq!(runtime["process"]["user"]["uid"], 65534);
    runtime["process"]["terminal"] = false.into();
    std::fs::write(&config_path, serde_json::to_vec(&runtime).unwrap()).unwrap();
    let id = format!("crabbox-interop-{}", std::process::id());
    let run = sh(&format!(
        "runc --root {w}/runc run --bundle {w}/bundle {id} </dev/null",
        w = work.path().display()
    ));
    let _ = sh(&format!(
        "runc --root {}/runc delete -f {id}",
        work.path().display()
    ));
    assert_eq!(run.code, 0, "runc run: {}", run.stderr);
    assert_eq!(run.stdout, "hello from RUN\n");
    // The layers umoci applied are the tree our own unpack gives.
    let ours = work.join("ours");
    engine
        .run(BIN, &["unpack", &name, ours.to_str().unwrap()])
        .ok();
    // umoci makes a directory for each VOLUME of the config (a mount
    // point for the runtime): not part of any layer.
    assert!(work.join("bundle/rootfs/data").is_dir());
    assert_same_tree(
        &snapshot(&ours),
        &snapshot_with(
            &work.join("bundle/rootfs"),
            &["data"],
            SnapshotOptions::default(),
        ),
        "our unpack of our image vs umoci's",
    );
    assert!(work
        .join("bundle/rootfs/srv/www/pages/index.html")
        .is_file());
    assert!(!work.join("bundle/rootfs/srv/site").exists());
    assert!(!work.join("bundle/rootfs/bin/vi").exists());
}

#[test]
fn buildah_builds_the_same_image_from_the_same_dockerfile() {
    if !require_root("buildah_builds_the_same_image_from_the_same_dockerfile") {
        return;
    }
    if !tool("buildah") {
        return;
    }
    let fixture_registry = Registry::serve_fixtures(&fixtures().registry_storage());
    let storage = TempDir::new("interop-registry");
    let writable = Registry::start(storage.path(), false, RegistryAuth::None);
    let engine = Engine::new();
    let context = TempDir::new("interop-context");
    write_context(
        context.path(),
        &format!("{}/busybox", fixture_registry.addr()),
    );
    let ctx = context.path().to_str().unwrap();

    engine.run(BIN, &["build", "-q", "-t", "ours:1", ctx]).ok();

    let bah = TempDir::new("interop-buildah");
    let built = buildah(
        bah.path(),
        &format!("bud --layers --isolation chroot --tls-verify=false -t theirs:1 {ctx}"),
    );
    assert_eq!(
        built.code, 0,
        "buildah bud: {}{}",
        built.stdout, built.stderr
    );
    let theirs = format!("{}/theirs:1", writable.addr());
    let pushed = buildah(
        bah.path(),
        &format!("push --tls-verify=false theirs:1 docker://{theirs}"),
    );
    assert_eq!(pushed.code, 0, "buildah push: {}", pushed.stderr);
    engine.run(BIN, &["pull", "-q", &theirs]).ok();
    // Theirs runs here as ours does.
    let out = engine.run(BIN, &["run", "--rm", &theirs]);
    assert_eq!(out.ok(), "hello from RUN\n");

    // The same config, field by field (buildah adds a label of its own).
    let (ours_config, mut theirs_config) = (config(&engine, "ours:1"), config(&engine, &theirs));
    if let Some(labels) = theirs_config["Labels"].as_object_mut() {
        labels.remove("io.buildah.version");
    }
    for field in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
    ] {
        assert_eq!(
            ours_config[field], theirs_config[field],
            "{field} differs: ours {}, buildah's {}",
            ours_config[field], theirs_config[field]
        );
    }
    // The same tree, mtimes aside.
    let trees = TempDir::new("interop-trees");
    let (a, b) = (trees.join("ours"), trees.join("theirs"));
    engine
        .run(BIN, &["unpack", "ours:1", a.to_str().unwrap()])
        .ok();
    engine
        .run(BIN, &["unpack", &theirs, b.to_str().unwrap()])
        .ok();
    // buildah 1.28 leaves in its RUN layers the mount points it made for
    // the step (empty /etc/hosts, /etc/hostname, /etc/resolv.conf, /run),
    // which buildkit and we take out: that is the one difference allowed,
    // and only as empty stubs.
    let stubs = ["etc/hostname", "etc/hosts", "etc/resolv.conf", "run"];
    for stub in stubs {
        assert!(
            !a.join(stub).exists(),
            "our image has the mount point stub {stub}"
        );
        let path = b.join(stub);
        if let Ok(meta) = path.symlink_metadata() {
            let empty = (meta.is_file() && meta.len() == 0)
                || (meta.is_dir() && std::fs::read_dir(&path).unwrap().next().is_none());
            assert!(empty, "buildah's {stub} is more than a mount point stub");
        }
    }
    assert_same_tree(
        &snapshot(&a),
        &snapshot_with(&b, &stubs, SnapshotOptions::default()),
        "our build vs buildah's",
    );
}
