//! Chapter 05's `push`, end to end: images from the fixture registry,
//! tagged for a writable docker-registry and pushed there (plain, with
//! Basic auth, with Bearer tokens), then pulled back by `ch01-images` into
//! another engine root and read by skopeo; the digest must survive.

use support::{fixtures, require_root, sh, Engine, Registry, RegistryAuth, TempDir};

const BIN: &str = "ch05-dockerfile";

/// A docker-registry that takes pushes, over its own temporary storage.
/// The registry is declared first: it stops before its storage goes.
struct Writable {
    registry: Registry,
    storage: TempDir,
}

impl Writable {
    fn start(auth: RegistryAuth) -> Writable {
        let storage = TempDir::new("push-registry");
        let registry = Registry::start(storage.path(), false, auth);
        Writable { registry, storage }
    }

    fn addr(&self) -> String {
        self.registry.addr()
    }

    /// Did anything reach this repository of the registry's storage?
    fn has_repository(&self, name: &str) -> bool {
        self.storage
            .join("docker/registry/v2/repositories")
            .join(name)
            .exists()
    }
}

fn fixture_registry() -> Registry {
    Registry::serve_fixtures(&fixtures().registry_storage())
}

/// A fresh engine holding the fixture `name`, named `target` too.
fn engine_with(fixture_registry: &Registry, name: &str, target: &str) -> Engine {
    let engine = Engine::new();
    let source = format!("{}/{name}", fixture_registry.addr());
    engine.run(BIN, &["pull", "-q", &source]).ok();
    engine.run(BIN, &["tag", &source, target]).ok();
    engine
}

fn busybox(field: &str) -> String {
    fixtures().get("busybox")[field]
        .as_str()
        .unwrap_or_else(|| panic!("fixtures.json: busybox has no {field}"))
        .to_string()
}

fn short(digest: &str) -> &str {
    &digest.trim_start_matches("sha256:")[..12]
}

/// The size of a stored blob, as docker prints a manifest's.
fn blob_size(engine: &Engine, digest: &str) -> u64 {
    let path = engine
        .root
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Pulls `reference` into a fresh engine with chapter 1's binary and
/// returns the manifest digest it stored.
fn pull_back(reference: &str) -> String {
    let other = Engine::new();
    other.run("ch01-images", &["pull", reference]).ok();
    other.assert_store_consistent();
    let inspect = other.run("ch01-images", &["inspect", reference]);
    let json: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    json[0]["Manifest"]["Digest"].as_str().unwrap().to_string()
}

/// Writes a docker config with these credentials for `registry`, as
/// `login` would (login itself refuses to save wrong ones).
fn write_login(engine: &Engine, registry: &str, user: &str, password: &str) {
    let auth = ch01_images::auth::base64_encode(format!("{user}:{password}").as_bytes());
    let config = serde_json::json!({"auths": {registry: {"auth": auth}}});
    std::fs::write(
        engine.docker_config.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
}

fn login(engine: &Engine, registry: &str, user: &str, password: &str) {
    let out = engine.run(BIN, &["login", registry, "-u", user, "-p", password]);
    assert_eq!(out.ok(), "Login Succeeded\n");
}

fn skopeo_digest(reference: &str, creds: Option<&str>) -> Option<String> {
    if !sh("which skopeo").stdout.contains("skopeo") {
        eprintln!("skopeo is not installed (scripts/setup installs it): its check is skipped");
        return None;
    }
    let creds = creds.map_or(String::new(), |c| format!("--creds {c} "));
    let out = sh(&format!(
        "skopeo inspect --tls-verify=false {creds}docker://{reference}"
    ));
    assert_eq!(out.code, 0, "skopeo inspect: {}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    Some(json["Digest"].as_str().unwrap().to_string())
}

#[test]
fn push_pull_back_push_again_and_mount_into_another_repository() {
    if !require_root("push_pull_back_push_again_and_mount_into_another_repository") {
        return;
    }
    let fixtures_registry = fixture_registry();
    let writable = Writable::start(RegistryAuth::None);
    let target = format!("{}/pushed:1", writable.addr());
    let engine = engine_with(&fixtures_registry, "busybox", &target);
    let digest = busybox("digest");
    let layer = fixtures().get("busybox")["layer_digests"][0]
        .as_str()
        .unwrap()
        .to_string();
    let size = blob_size(&engine, &digest);

    // The first push sends everything: docker's three kinds of line.
    let out = engine.run(BIN, &["push", &target]);
    assert_eq!(
        out.ok(),
        format!(
            "The push refers to repository [{}/pushed]\n{}: Pushed\n1: digest: {digest} size: {size}\n",
            writable.addr(),
            short(&layer)
        )
    );
    // Pulled back elsewhere, it is the same image: the manifest went up
    // byte for byte.
    assert_eq!(pull_back(&target), digest);
    if let Some(seen) = skopeo_digest(&target, None) {
        assert_eq!(seen, digest, "skopeo sees another digest");
    }

    // Again: the registry has every blob; only the manifest is sent.
    let out = engine.run(BIN, &["push", &target]);
    let stdout = out.ok();
    assert!(
        stdout.contains(&format!("{}: Layer already exists\n", short(&layer))),
        "{stdout}"
    );
    assert!(!stdout.contains("Pushed"), "{stdout}");

    // Another repository of the same registry: the layer is mounted from
    // the first, not sent again. No tag means latest, as docker says.
    let second = format!("{}/second", writable.addr());
    engine.run(BIN, &["tag", &target, &second]).ok();
    let out = engine.run(BIN, &["push", &second]);
    assert_eq!(
        out.ok(),
        format!(
            "Using default tag: latest\nThe push refers to repository [{second}]\n{}: Mounted from pushed\nlatest: digest: {digest} size: {size}\n",
            short(&layer)
        )
    );
    assert_eq!(pull_back(&format!("{second}:latest")), digest);

    // -q prints the pushed name only, as `docker push -q` does.
    let third = format!("{}/team/third:v3", writable.addr());
    engine.run(BIN, &["tag", &target, &third]).ok();
    let out = engine.run(BIN, &["push", "-q", &third]);
    assert_eq!(out.ok(), format!("{third}\n"));
    assert_eq!(pull_back(&third), digest);
    engine.assert_store_consistent();
}

#[test]
fn a_big_blob_goes_up_in_chunks_and_explain_shows_each_request() {
    if !require_root("a_big_blob_goes_up_in_chunks_and_explain_shows_each_request") {
        return;
    }
    let fixtures_registry = fixture_registry();
    let writable = Writable::start(RegistryAuth::None);
    let target = format!("{}/chunked:1", writable.addr());
    let engine = engine_with(&fixtures_registry, "layered", &target)
        .with_env("CRABBOX_PUSH_CHUNK_SIZE", "300000");
    let out = engine.run(BIN, &["--explain", "push", &target]);
    let stdout = out.ok();
    assert_eq!(stdout.matches(": Pushed\n").count(), 6, "{stdout}");
    let layered = fixtures().get("layered");
    let digest = layered["digest"].as_str().unwrap();
    assert!(
        stdout.ends_with(&format!(
            "1: digest: {digest} size: {}\n",
            blob_size(&engine, digest)
        )),
        "{stdout}"
    );
    // The narration: HEAD, POST, PATCH chunks with their ranges, the
    // closing PUT with the digest, the manifest with its media type.
    let explain = &out.stderr;
    for expected in [
        "$ curl -sS -I http://",
        "$ curl -sS -i -X POST http://",
        "-X PATCH -H 'Content-Type: application/octet-stream' -H 'Content-Range: 0-299999' --data-binary @<(tail -c +1 ",
        "-H 'Content-Range: 300000-599999' --data-binary @<(tail -c +300001 ",
        "&digest=sha256%3A",
        "-X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @",
    ] {
        assert!(explain.contains(expected), "no {expected:?} in:\n{explain}");
    }
    // The manifest is the last request.
    let last_request = explain
        .lines()
        .rfind(|l| l.starts_with("[explain]   $ curl"))
        .unwrap();
    assert!(
        last_request.ends_with("/v2/chunked/manifests/1"),
        "{last_request}"
    );
    assert_eq!(pull_back(&target), digest);
}

#[test]
fn a_multi_platform_image_pushes_this_machines_manifest_and_says_so() {
    if !require_root("a_multi_platform_image_pushes_this_machines_manifest_and_says_so") {
        return;
    }
    let fixtures_registry = fixture_registry();
    let writable = Writable::start(RegistryAuth::None);
    let target = format!("{}/multi:1", writable.addr());
    let engine = engine_with(&fixtures_registry, "multi", &target);
    let multi = fixtures().get("multi");
    let host = fixtures().manifest["host_architecture"].as_str().unwrap();
    let mine = multi["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == host)
        .expect("the multi fixture has this machine's platform")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let out = engine.run(BIN, &["push", &target]);
    let stdout = out.ok();
    assert!(
        stdout.ends_with(&format!(
            "1: digest: {mine} size: {}\n",
            blob_size(&engine, &mine)
        )),
        "{stdout}"
    );
    let note: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(note.len(), 1, "{}", out.stderr);
    assert!(
        note[0].contains(multi["digest"].as_str().unwrap()) && note[0].contains(&mine),
        "{}",
        note[0]
    );
    assert_eq!(pull_back(&target), mine);
}

#[test]
fn basic_auth_push_needs_a_login_and_the_right_password() {
    if !require_root("basic_auth_push_needs_a_login_and_the_right_password") {
        return;
    }
    let fixtures_registry = fixture_registry();
    let writable = Writable::start(RegistryAuth::Basic {
        user: "learner".into(),
        password: "s3cret".into(),
    });
    let addr = writable.addr();
    let target = format!("{addr}/pushed:1");
    let engine = engine_with(&fixtures_registry, "busybox", &target);

    // No login: one line that says who refused and what to do.
    let out = engine.run(BIN, &["push", &target]);
    let line = out.fails_with(125);
    assert!(
        line.contains(&format!("push access denied for {addr}/pushed"))
            && line.contains(&format!("login {addr}")),
        "{line}"
    );
    // A wrong password: refused by the registry, nothing pushed after.
    write_login(&engine, &addr, "learner", "wrong");
    let out = engine.run(BIN, &["push", &target]);
    let line = out.fails_with(125);
    assert!(
        line.contains(&format!("push access denied for {addr}/pushed"))
            && line.contains("refused the login of learner"),
        "{line}"
    );
    assert!(!writable.has_repository("pushed"), "a refused push wrote");

    login(&engine, &addr, "learner", "s3cret");
    let out = engine.run(BIN, &["push", &target]);
    let digest = busybox("digest");
    assert!(
        out.ok().ends_with(&format!(
            "1: digest: {digest} size: {}\n",
            blob_size(&engine, &digest)
        )),
        "{}",
        out.stdout
    );
    // A mount works under Basic auth too.
    let second = format!("{addr}/second:1");
    engine.run(BIN, &["tag", &target, &second]).ok();
    let stdout = engine.run(BIN, &["push", &second]).ok().to_string();
    assert!(stdout.contains(": Mounted from pushed\n"), "{stdout}");
    if let Some(seen) = skopeo_digest(&target, Some("learner:s3cret")) {
        assert_eq!(seen, digest);
    }
}

#[test]
fn bearer_token_push_asks_for_pull_and_push() {
    if !require_root("bearer_token_push_asks_for_pull_and_push") {
        return;
    }
    let fixtures_registry = fixture_registry();
    let writable = Writable::start(RegistryAuth::Token {
        user: Some(("learner".into(), "pw".into())),
    });
    let addr = writable.addr();
    let target = format!("{addr}/pushed:1");
    let engine = engine_with(&fixtures_registry, "busybox", &target);
    let requests = || {
        writable
            .registry
            .token_server
            .as_ref()
            .unwrap()
            .requests
            .lock()
            .unwrap()
            .clone()
    };

    // Not logged in: the auth server refuses the token.
    let out = engine.run(BIN, &["push", &target]);
    let line = out.fails_with(125);
    assert!(
        line.contains(&format!("push access denied for {addr}/pushed"))
            && line.contains("auth server")
            && line.contains(&format!("login {addr}")),
        "{line}"
    );
    assert!(!writable.has_repository("pushed"), "a refused push wrote");

    login(&engine, &addr, "learner", "pw");
    let out = engine.run(BIN, &["--explain", "push", &target]);
    out.ok();
    assert!(
        out.stderr
            .contains("-H \"Authorization: Bearer $TOKEN\" --data-binary @"),
        "{}",
        out.stderr
    );
    let asked = requests();
    let push_scope = "scope=repository%3Apushed%3Apull%2Cpush";
    assert!(
        asked
            .iter()
            .any(|r| r.contains(push_scope) && r.ends_with("auth=Basic")),
        "{asked:?}"
    );
    assert_eq!(pull_back_with_login(&target, &addr), busybox("digest"));

    // A mount from another repository needs a token that may also read
    // that one: the registry's challenge names both scopes.
    let second = format!("{addr}/second:1");
    engine.run(BIN, &["tag", &target, &second]).ok();
    let stdout = engine.run(BIN, &["push", &second]).ok().to_string();
    assert!(stdout.contains(": Mounted from pushed\n"), "{stdout}");
    let asked = requests();
    assert!(
        asked
            .iter()
            .any(|r| r.contains("repository%3Asecond%3Apull%2Cpush")
                && r.contains("repository%3Apushed%3Apull")),
        "{asked:?}"
    );
}

/// [`pull_back`] from a registry that needs the test's login.
fn pull_back_with_login(reference: &str, registry: &str) -> String {
    let other = Engine::new();
    login(&other, registry, "learner", "pw");
    other.run("ch01-images", &["pull", reference]).ok();
    let inspect = other.run("ch01-images", &["inspect", reference]);
    let json: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    json[0]["Manifest"]["Digest"].as_str().unwrap().to_string()
}

#[test]
fn what_cannot_be_pushed_is_one_line_and_exit_125() {
    if !require_root("what_cannot_be_pushed_is_one_line_and_exit_125") {
        return;
    }
    let writable = Writable::start(RegistryAuth::None);
    let engine = Engine::new();
    let missing = format!("{}/nothing:1", writable.addr());
    let line = engine
        .run(BIN, &["push", &missing])
        .fails_with(125)
        .to_string();
    assert!(
        line.contains(&format!(
            "An image does not exist locally with the tag: {}/nothing",
            writable.addr()
        )),
        "{line}"
    );
    let digest = busybox("digest");
    let line = engine
        .run(BIN, &["push", &format!("{}/x@{digest}", writable.addr())])
        .fails_with(125)
        .to_string();
    assert!(line.contains("cannot push a digest reference"), "{line}");
    // A registry that is not there: one line too.
    let fixtures_registry = fixture_registry();
    let mut gone = Writable::start(RegistryAuth::None);
    let target = format!("{}/pushed:1", gone.addr());
    let engine = engine_with(&fixtures_registry, "busybox", &target);
    gone.registry.stop();
    let line = engine
        .run(BIN, &["push", &target])
        .fails_with(125)
        .to_string();
    assert!(line.contains("cannot reach"), "{line}");
}
