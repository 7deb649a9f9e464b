//! Chapter 01 end to end: `ch01-images` driven as a learner would, against
//! a real docker-registry holding fixture images built by umoci and skopeo.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use support::hostile::{HostileProxy, Hostility};
use support::{fixtures, sh, Engine, Registry, RegistryAuth, TempDir};

const BIN: &str = "ch01-images";

fn fixture_registry() -> Registry {
    Registry::serve_fixtures(&fixtures().registry_storage())
}

#[test]
fn pulls_every_fixture_and_stores_what_the_registry_serves() {
    let registry = fixture_registry();
    let engine = Engine::new();
    for name in ["busybox", "layered", "multi", "busybox-v2s2", "volumes"] {
        let reference = format!("{}/{name}", registry.addr());
        let out = engine.run(BIN, &["pull", &reference]);
        let stdout = out.ok();
        let fixture = fixtures().get(name);
        let digest = fixture["digest"].as_str().unwrap();
        assert!(
            stdout.starts_with(&format!("latest: Pulling from {name}\n")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("Digest: {digest}\n")),
            "{name}: {stdout}"
        );
        assert!(
            stdout.ends_with(&format!("{reference}:latest\n")),
            "{stdout}"
        );
    }
    // The layered image has all six layers, each stored under its digest.
    let layered = fixtures().get("layered");
    for layer in layered["layer_digests"].as_array().unwrap() {
        let hex = layer.as_str().unwrap().trim_start_matches("sha256:");
        assert!(
            engine.root.join("images/blobs/sha256").join(hex).exists(),
            "layer {hex} missing"
        );
    }
    // The multi-platform image resolved to this machine's entry.
    let inspect = engine.run(BIN, &["inspect", &format!("{}/multi", registry.addr())]);
    let json: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    let host_arch = fixtures().manifest["host_architecture"].as_str().unwrap();
    assert_eq!(json[0]["Architecture"], host_arch);
    assert_eq!(
        json[0]["RepoDigests"][0],
        format!(
            "{}/multi@{}",
            registry.addr(),
            fixtures().get("multi")["digest"].as_str().unwrap()
        )
    );
    // The Docker schema 2 copy is stored with its media type.
    let inspect = engine.run(
        BIN,
        &["inspect", &format!("{}/busybox-v2s2", registry.addr())],
    );
    let json: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    assert_eq!(
        json[0]["Manifest"]["MediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(json[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    engine.assert_store_consistent();
    // The second pull downloads nothing.
    let again = engine.run(BIN, &["pull", &format!("{}/layered", registry.addr())]);
    let stdout = again.ok();
    assert_eq!(stdout.matches("Already exists").count(), 6, "{stdout}");
    assert!(
        stdout.contains("Status: Image is up to date for"),
        "{stdout}"
    );
}

#[test]
fn platform_flag_picks_the_other_entry_and_unknown_platforms_are_listed() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = format!("{}/multi", registry.addr());
    engine
        .run(BIN, &["pull", "--platform", "linux/arm64", &reference])
        .ok();
    let json: serde_json::Value =
        serde_json::from_str(engine.run(BIN, &["inspect", &reference]).ok()).unwrap();
    assert_eq!(json[0]["Architecture"], "arm64");
    let arm = &fixtures().get("multi")["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .unwrap()["digest"];
    assert_eq!(json[0]["Manifest"]["Digest"], *arm);
    let out = engine.run(BIN, &["pull", "--platform", "linux/s390x", &reference]);
    let line = out.fails_with(125);
    assert!(
        line.contains("no image for platform linux/s390x")
            && line.contains("linux/amd64")
            && line.contains("linux/arm64/v8"),
        "{line}"
    );
}

#[test]
fn pull_by_digest_and_digest_wins_over_tag() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let digest = fixtures().get("busybox")["digest"].as_str().unwrap();
    let reference = format!("{}/busybox:nosuchtag@{digest}", registry.addr());
    let stdout = engine.run(BIN, &["pull", &reference]).ok().to_string();
    assert!(stdout.contains(&format!("Digest: {digest}")), "{stdout}");
    let images = engine.run(BIN, &["images", "--digests"]).ok().to_string();
    assert!(images.contains(digest), "{images}");
}

#[test]
fn images_table_snapshot() {
    let registry = fixture_registry();
    let engine = Engine::new();
    for name in ["busybox", "layered"] {
        engine
            .run(BIN, &["pull", "-q", &format!("{}/{name}", registry.addr())])
            .ok();
    }
    let table = engine
        .run(BIN, &["images"])
        .ok()
        .replace(&registry.addr(), "localhost:5000");
    insta::with_settings!({filters => vec![
        (r"\d+ (years|months|weeks|days|hours|minutes) ago", "[CREATED]"),
        // IDs and sizes depend on the host's busybox binary.
        (r"\b[0-9a-f]{12}\b", "[ID]"),
        (r"\b\d+(\.\d+)?(B|kB|MB)\b", "[SIZE]"),
    ]}, {
        insta::assert_snapshot!("images", table);
    });
    let ids = engine.run(BIN, &["images", "-q"]).ok().to_string();
    assert_eq!(ids.lines().count(), 2);
}

#[test]
fn explain_narrates_requests_as_curl_commands() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let out = engine.run(
        BIN,
        &["--explain", "pull", &format!("{}/busybox", registry.addr())],
    );
    out.ok();
    let root = engine.root.path().display().to_string();
    let narration = out
        .stderr
        .replace(&registry.addr(), "localhost:5000")
        .replace(&root, "$ROOT");
    insta::with_settings!({filters => vec![
        (r"\.\d+\.\d+\.partial", ".[PID].[N].partial"),
        // Digests and sizes depend on the host's busybox binary.
        (r"[0-9a-f]{64}", "[HEX]"),
        (r"\d+ bytes", "[N] bytes"),
    ]}, {
        insta::assert_snapshot!("explain_pull", narration);
    });
    // The environment variable does the same.
    let engine2 = Engine::new().with_env("CRABBOX_EXPLAIN", "1");
    let out = engine2.run(BIN, &["pull", &format!("{}/busybox", registry.addr())]);
    assert!(
        out.stderr.contains("[explain]   $ curl -sS"),
        "{}",
        out.stderr
    );
}

#[test]
fn rmi_keeps_blobs_that_another_image_still_uses() {
    let registry = fixture_registry();
    let engine = Engine::new();
    engine
        .run(BIN, &["pull", &format!("{}/busybox", registry.addr())])
        .ok();
    engine
        .run(BIN, &["pull", &format!("{}/layered", registry.addr())])
        .ok();
    let busybox_layer = fixtures().get("busybox")["layer_digests"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let layered_only = fixtures().get("layered")["layer_digests"][5]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = |hex: &str| engine.root.join("images/blobs/sha256").join(hex);
    let out = engine.run(BIN, &["rmi", &format!("{}/layered", registry.addr())]);
    let stdout = out.ok();
    assert!(
        stdout.starts_with(&format!(
            "Untagged: {}/layered:latest\nDeleted: sha256:",
            registry.addr()
        )),
        "{stdout}"
    );
    assert!(
        blob(&busybox_layer).exists(),
        "the shared busybox layer must stay"
    );
    assert!(!blob(&layered_only).exists(), "layered's own layer must go");
    // Remove by ID prefix; then the store is empty.
    let id = engine.run(BIN, &["images", "-q"]).ok().trim().to_string();
    engine.run(BIN, &["rmi", &id]).ok();
    assert_eq!(
        fs::read_dir(engine.root.join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    let out = engine.run(BIN, &["rmi", "busybox"]);
    assert!(out.fails_with(125).contains("no such image: busybox"));
}

#[test]
fn bad_input_gets_one_clear_line_and_exit_125() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let cases = [
        (
            vec!["pull", "Alpine"],
            "invalid reference \"Alpine\": repository names must be lowercase",
        ),
        (vec!["pull", "busybox@sha256:abc"], "invalid reference"),
        (
            vec!["pull", "--platform", "linux", "busybox"],
            "invalid platform",
        ),
    ];
    for (args, want) in cases {
        let out = engine.run(BIN, &args);
        let line = out.fails_with(125);
        assert!(line.contains(want), "{args:?}: {line}");
    }
    let missing = format!("{}/nosuch", registry.addr());
    let line = engine
        .run(BIN, &["pull", &missing])
        .fails_with(125)
        .to_string();
    assert!(
        line.contains("unknown") && line.contains("nosuch") && line.contains("check the name"),
        "{line}"
    );
    let missing_tag = format!("{}/busybox:v9", registry.addr());
    let line = engine
        .run(BIN, &["pull", &missing_tag])
        .fails_with(125)
        .to_string();
    assert!(
        line.contains("manifest unknown") && line.contains("busybox:v9"),
        "{line}"
    );
    // Nothing listens on this port: the message names the URL.
    let port = support::registry::free_port();
    let line = engine
        .run(BIN, &["pull", &format!("127.0.0.1:{port}/busybox")])
        .fails_with(125)
        .to_string();
    assert!(
        line.contains(&format!("cannot reach http://127.0.0.1:{port}/v2/")),
        "{line}"
    );
    // A usage error exits 125 too, as docker's do.
    assert_eq!(engine.run(BIN, &["pull"]).code, 125);
    // None of it left anything named in the store.
    let images = engine.run(BIN, &["images", "-q"]);
    assert_eq!(images.ok(), "");
}

#[test]
fn basic_auth_login_pull_logout() {
    // Read-only, so the shared fixture storage can be served as it is.
    let registry = Registry::start(
        &fixtures().registry_storage(),
        true,
        RegistryAuth::Basic {
            user: "learner".into(),
            password: "s3cret".into(),
        },
    );
    let engine = Engine::new();
    let reference = format!("{}/busybox", registry.addr());
    let line = engine
        .run(BIN, &["pull", &reference])
        .fails_with(125)
        .to_string();
    assert!(line.contains("requires a login"), "{line}");
    // A wrong password is refused and nothing is stored.
    let line = engine
        .run(
            BIN,
            &["login", &registry.addr(), "-u", "learner", "-p", "wrong"],
        )
        .fails_with(125)
        .to_string();
    assert!(
        line.contains("login to") && line.contains("failed"),
        "{line}"
    );
    let config = engine.docker_config.join("config.json");
    assert!(!config.exists(), "a refused login must not be saved");
    // The right one is kept where docker keeps it, readable only by its owner.
    let mut cmd = engine.command(
        BIN,
        &[
            "login",
            &registry.addr(),
            "-u",
            "learner",
            "--password-stdin",
        ],
    );
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        saved["auths"][registry.addr()]["auth"],
        "bGVhcm5lcjpzM2NyZXQ="
    ); // base64("learner:s3cret")
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    engine.run(BIN, &["pull", &reference]).ok();
    // logout forgets it, and pulls need a login again.
    let out = engine.run(BIN, &["logout", &registry.addr()]);
    assert_eq!(
        out.ok(),
        format!("Removing login credentials for {}\n", registry.addr())
    );
    engine.run(BIN, &["rmi", &reference]).ok();
    engine.run(BIN, &["pull", &reference]).fails_with(125);
}

#[test]
fn bearer_token_flow_like_docker_hub() {
    let registry = Registry::start(
        &fixtures().registry_storage(),
        true,
        RegistryAuth::Token { user: None },
    );
    let engine = Engine::new();
    let reference = format!("{}/layered", registry.addr());
    let out = engine.run(BIN, &["--explain", "pull", &reference]);
    out.ok();
    assert!(
        out.stderr
            .contains("[explain]   $ curl -sS -H \"Authorization: Bearer $TOKEN\""),
        "{}",
        out.stderr
    );
    engine.assert_store_consistent();
    // The token server was asked anonymously, for exactly this repository.
    let requests = registry
        .token_server
        .as_ref()
        .unwrap()
        .requests
        .lock()
        .unwrap()
        .clone();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.contains("scope=repository%3Alayered%3Apull"), "{r}");
        assert!(r.contains("service=crabbox-test-registry"), "{r}");
        assert!(r.ends_with("auth=none"), "{r}");
    }
}

#[test]
fn bearer_token_with_credentials() {
    // Read-only, so the shared fixture storage can be served as it is.
    let registry = Registry::start(
        &fixtures().registry_storage(),
        true,
        RegistryAuth::Token {
            user: Some(("learner".into(), "pw".into())),
        },
    );
    let engine = Engine::new();
    let reference = format!("{}/busybox", registry.addr());
    let line = engine
        .run(BIN, &["pull", &reference])
        .fails_with(125)
        .to_string();
    assert!(line.contains("pull access denied"), "{line}");
    engine
        .run(
            BIN,
            &["login", &registry.addr(), "-u", "learner", "-p", "pw"],
        )
        .ok();
    engine.run(BIN, &["pull", &reference]).ok();
    let requests = registry
        .token_server
        .as_ref()
        .unwrap()
        .requests
        .lock()
        .unwrap()
        .clone();
    assert!(
        requests.last().unwrap().ends_with("auth=Basic"),
        "{requests:?}"
    );
}

#[test]
fn mirror_serves_docker_hub_names() {
    let registry = fixture_registry();
    let engine = Engine::new().with_env(
        "CRABBOX_REGISTRY_MIRROR",
        &format!("http://{}", registry.addr()),
    );
    let out = engine.run(BIN, &["--explain", "pull", "busybox"]);
    let stdout = out.ok();
    assert!(
        stdout.starts_with("latest: Pulling from library/busybox\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("docker.io/library/busybox:latest\n"),
        "{stdout}"
    );
    assert!(
        out.stderr.contains(&format!(
            "GET http://{}/v2/library/busybox/manifests/latest",
            registry.addr()
        )),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("docker.io/v2"),
        "no request may go to Docker Hub"
    );
    let images = engine.run(BIN, &["images"]).ok().to_string();
    assert!(
        images.lines().nth(1).unwrap().starts_with("busybox "),
        "{images}"
    );
}

#[test]
fn skopeo_and_umoci_read_our_store() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let reference = format!("{}/layered:latest", registry.addr());
    engine.run(BIN, &["pull", &reference]).ok();
    let layout = engine.root.join("images");
    let out = sh(&format!(
        "skopeo inspect oci:{}:{reference}",
        layout.display()
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["Digest"], fixtures().get("layered")["digest"]);
    assert_eq!(json["Layers"].as_array().unwrap().len(), 6);
    let bundle = TempDir::new("umoci");
    let rootless = if support::is_root() { "" } else { "--rootless" };
    let out = sh(&format!(
        "umoci unpack {rootless} --image {}:{reference} {}/b",
        layout.display(),
        bundle.path().display()
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(bundle.join("b/rootfs/etc/motd")).unwrap(),
        "layered v2\n"
    );
    assert!(!bundle.join("b/rootfs/etc/obsolete.conf").exists());
}

#[test]
fn save_load_round_trip_and_skopeo_reads_the_archive() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let busybox = format!("{}/busybox", registry.addr());
    let layered = format!("{}/layered", registry.addr());
    engine.run(BIN, &["pull", &busybox]).ok();
    engine.run(BIN, &["pull", &layered]).ok();
    let work = TempDir::new("save");
    let archive = work.join("images.tar");
    engine
        .run(
            BIN,
            &["save", "-o", archive.to_str().unwrap(), &busybox, &layered],
        )
        .ok();
    // skopeo reads it as a docker-archive.
    let out = sh(&format!(
        "skopeo inspect docker-archive:{}:{}:latest",
        archive.display(),
        layered
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Loading it into an empty engine gives the same images (same IDs).
    let other = Engine::new();
    let out = other.run(BIN, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        out.ok(),
        format!("Loaded image: {busybox}:latest\nLoaded image: {layered}:latest\n")
    );
    let ids = |e: &Engine| {
        let mut v: Vec<String> = e
            .run(BIN, &["images", "-q", "--no-trunc"])
            .ok()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&engine), ids(&other));
    other.assert_store_consistent();
    // A file that is not an archive is one clear error.
    fs::write(work.join("junk.tar"), b"not a tar at all").unwrap();
    let line = other
        .run(
            BIN,
            &["load", "-i", work.join("junk.tar").to_str().unwrap()],
        )
        .fails_with(125)
        .to_string();
    assert!(line.contains("junk.tar"), "{line}");
}

#[test]
fn corrupt_blob_is_rejected_and_not_stored() {
    let storage = TempDir::new("corrupt-storage");
    assert!(
        sh(&format!(
            "cp -a {}/. {}",
            fixtures().registry_storage().display(),
            storage.path().display()
        ))
        .code
            == 0
    );
    // Damage one of layered's own layers inside the registry, keeping its size.
    let victim = fixtures().get("layered")["layer_digests"][2]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let data = storage.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{victim}/data",
        &victim[..2]
    ));
    let mut bytes = fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let registry = Registry::start(storage.path(), true, RegistryAuth::None);
    let engine = Engine::new();
    let line = engine
        .run(BIN, &["pull", &format!("{}/layered", registry.addr())])
        .fails_with(125)
        .to_string();
    assert!(
        line.contains("digest mismatch")
            && line.contains(&victim)
            && line.contains("nothing stored"),
        "{line}"
    );
    assert!(!engine
        .root
        .join("images/blobs/sha256")
        .join(&victim)
        .exists());
    assert_eq!(
        fs::read_dir(engine.root.join("tmp")).unwrap().count(),
        0,
        "no partial download may stay"
    );
    assert_eq!(
        engine.run(BIN, &["images", "-q"]).ok(),
        "",
        "the image must not be named"
    );
    engine.assert_store_consistent();
}

#[test]
fn sigkill_at_any_moment_then_a_second_pull_completes() {
    let registry = fixture_registry();
    let reference = format!("{}/layered", registry.addr());
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let engine = Engine::new();
        let mut child = engine
            .command(BIN, &["pull", &reference])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        engine.assert_store_consistent();
        engine.run(BIN, &["pull", &reference]).ok();
        engine.assert_store_consistent();
        let json: serde_json::Value =
            serde_json::from_str(engine.run(BIN, &["inspect", &reference]).ok()).unwrap();
        assert_eq!(json[0]["RootFS"]["Layers"].as_array().unwrap().len(), 6);
        assert_eq!(
            fs::read_dir(engine.root.join("tmp")).unwrap().count(),
            0,
            "leftovers of the killed pull are cleaned"
        );
    }
}

#[test]
fn a_full_disk_is_one_clear_error_and_leaves_no_partial_blob() {
    if !support::require_root("a_full_disk_is_one_clear_error_and_leaves_no_partial_blob") {
        return;
    }
    let registry = fixture_registry();
    let dir = TempDir::new("full-disk");
    // A 600 kB tmpfs holds the config but not busybox's 1 MB layer. It is
    // mounted in a mount namespace of its own, so it vanishes with it.
    let script = format!(
        "mount -t tmpfs -o size=600k,mode=700 tmpfs {d} && {bin} --root {d} pull {r}/busybox; echo \"exit=$?\"; \
         echo partial=$(ls {d}/tmp | wc -l); cat {d}/images/index.json",
        d = dir.path().display(),
        bin = support::bin(BIN).display(),
        r = registry.addr()
    );
    let out = support::Run::from_output(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap(),
    );
    assert!(
        out.stdout.contains("exit=125"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("No space left on device") && line.contains("free some space"),
        "{line}"
    );
    assert!(out.stdout.contains("partial=0"), "{}", out.stdout);
    assert!(
        out.stdout.contains(r#""manifests":[]"#),
        "no image may be named: {}",
        out.stdout
    );
}

#[test]
fn rmi_by_id_refuses_an_image_with_several_names_unless_forced() {
    let registry = fixture_registry();
    let engine = Engine::new();
    // busybox and library/busybox are one image under two names.
    let first = format!("{}/busybox", registry.addr());
    let second = format!("{}/library/busybox", registry.addr());
    engine.run(BIN, &["pull", "-q", &first]).ok();
    engine.run(BIN, &["pull", "-q", &second]).ok();
    let id = engine
        .run(BIN, &["images", "-q"])
        .ok()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let line = engine.run(BIN, &["rmi", &id]).fails_with(125).to_string();
    assert!(
        line.contains("must be forced") && line.contains(&id),
        "{line}"
    );
    assert_eq!(
        engine.run(BIN, &["images", "-q"]).ok().lines().count(),
        2,
        "nothing removed"
    );
    let out = engine.run(BIN, &["rmi", "-f", &id]);
    let stdout = out.ok();
    assert_eq!(stdout.matches("Untagged: ").count(), 2, "{stdout}");
    assert!(stdout.contains("Deleted: sha256:"), "{stdout}");
    assert_eq!(engine.run(BIN, &["images", "-q"]).ok(), "");
}

#[test]
fn platform_flag_on_a_single_platform_image_is_an_error() {
    let registry = fixture_registry();
    let engine = Engine::new();
    let other = if fixtures().manifest["host_architecture"] == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let reference = format!("{}/busybox", registry.addr());
    let line = engine
        .run(BIN, &["pull", "--platform", other, &reference])
        .fails_with(125)
        .to_string();
    assert!(
        line.contains(&format!("not the requested {other}")),
        "{line}"
    );
    assert_eq!(engine.run(BIN, &["images", "-q"]).ok(), "");
}

/// A proxy in front of the registry that answers the first `failures`
/// blob requests with `status`.
fn failing_blobs(upstream: u16, failures: usize, status: &'static str) -> HostileProxy {
    HostileProxy::start(
        upstream,
        Hostility {
            matching: "/blobs/".into(),
            fail_first: Some((failures, status)),
            ..Hostility::default()
        },
    )
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let registry = fixture_registry();
    for status in ["503 Service Unavailable", "429 Too Many Requests"] {
        // Two failures: the client's third attempt gets through.
        let proxy = failing_blobs(registry.port, 2, status);
        let engine = Engine::new();
        let out = engine.run(
            BIN,
            &[
                "--explain",
                "pull",
                &format!("127.0.0.1:{}/busybox", proxy.port),
            ],
        );
        out.ok();
        let code = &status[..3];
        assert!(
            out.stderr
                .contains(&format!("answered HTTP {code}; retrying in")),
            "{}",
            out.stderr
        );
        engine.assert_store_consistent();
    }
    // A registry that keeps failing: after the last attempt, one clear line.
    let proxy = failing_blobs(registry.port, 100, "503 Service Unavailable");
    let engine = Engine::new();
    let line = engine
        .run(BIN, &["pull", &format!("127.0.0.1:{}/busybox", proxy.port)])
        .fails_with(125)
        .to_string();
    assert!(line.contains("HTTP 503"), "{line}");
}
