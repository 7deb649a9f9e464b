//! Chapter 01 against a hostile registry: what a registry can
//! send to hurt a client, and what `ch01-images` does about it. Each test
//! is an attack that must fail cleanly: one line on stderr, exit 125,
//! nothing half-written in the store, and the store still usable after.
//!
//! The attacks are made by [`support::hostile::HostileProxy`] in front of a
//! real `docker-registry`, or by documents pushed to a writable one.

use std::fs;
use std::time::{Duration, Instant};
use support::hostile::{HostileProxy, Hostility};
use support::{fixtures, sh, Engine, Registry, RegistryAuth, TempDir};

const BIN: &str = "ch01-images";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn fixture_registry() -> Registry {
    Registry::serve_fixtures(&fixtures().registry_storage())
}

/// An engine whose slow-registry limits are small, so attacks end in about
/// a second: nothing for 1 s is a stall, under 200 bytes/s is too slow.
fn impatient_engine() -> Engine {
    Engine::new()
        .with_env("CRABBOX_REGISTRY_IDLE_TIMEOUT", "1")
        .with_env("CRABBOX_REGISTRY_MIN_RATE", "200")
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// The blobs in an engine's store.
fn blobs(engine: &Engine) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(engine.root.join("images/blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Nothing named, nothing stored, nothing left half-written.
#[track_caller]
fn assert_nothing_stored(engine: &Engine) {
    assert_eq!(engine.run(BIN, &["images", "-q"]).ok(), "", "nothing named");
    assert_eq!(blobs(engine), Vec::<String>::new(), "no blob stored");
    let tmp: Vec<_> = fs::read_dir(engine.root.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "no partial download may stay: {tmp:?}");
    engine.assert_store_consistent();
}

/// Runs a pull that must fail, within `limit`, with one line containing
/// every one of `wanted`.
#[track_caller]
fn pull_fails(engine: &Engine, reference: &str, limit: Duration, wanted: &[&str]) -> String {
    support::bin(BIN); // built before the clock starts
    let started = Instant::now();
    let out = engine.run(BIN, &["pull", reference]);
    let took = started.elapsed();
    let line = out.fails_with(125).to_string();
    for w in wanted {
        assert!(line.contains(w), "{w:?} missing from: {line}");
    }
    assert!(took < limit, "the pull took {took:?}: {line}");
    line
}

#[test]
fn slow_and_stalled_manifests_and_layers_give_up_with_one_line() {
    let registry = fixture_registry();
    let busybox = fixtures().get("busybox");
    let layer = busybox["layer_digests"][0].as_str().unwrap();

    // Control: the same limits through an honest proxy pull fine.
    let honest = HostileProxy::start(registry.port, Hostility::default());
    let engine = impatient_engine();
    engine
        .run(BIN, &["pull", &format!("{}/busybox", honest.addr())])
        .ok();
    engine.assert_store_consistent();

    // A manifest at 10 bytes/s: every read succeeds, so only the rate
    // rule can stop it.
    let slow = HostileProxy::start(
        registry.port,
        Hostility {
            matching: "/manifests/".into(),
            dribble: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    );
    let engine = impatient_engine();
    let line = pull_fails(
        &engine,
        &format!("{}/busybox", slow.addr()),
        Duration::from_secs(10),
        &[
            "manifest of busybox:latest",
            "registry sent ",
            "too slow (under 200 bytes/s), giving up",
        ],
    );
    assert!(!line.contains("cannot reach"), "{line}");
    assert!(slow.tampered.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_nothing_stored(&engine);

    // A layer at 10 bytes/s: the config arrives, the layer never does.
    let slow_layer = HostileProxy::start(
        registry.port,
        Hostility {
            matching: format!("/blobs/{layer}"),
            dribble: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    );
    let engine = impatient_engine();
    pull_fails(
        &engine,
        &format!("{}/busybox", slow_layer.addr()),
        // Not retried: one window of the rate rule, not three.
        Duration::from_secs(10),
        &[
            &format!("download of {layer}"),
            "too slow",
            "giving up",
            "nothing stored",
        ],
    );
    assert_eq!(engine.run(BIN, &["images", "-q"]).ok(), "");
    assert!(
        !blobs(&engine).contains(&hex(layer).to_string()),
        "the slow layer must not be stored"
    );
    engine.assert_store_consistent();

    // A layer that stalls: a byte, then silence longer than the idle timeout.
    let stalled = HostileProxy::start(
        registry.port,
        Hostility {
            matching: format!("/blobs/{layer}"),
            dribble: Some(Duration::from_secs(20)),
            ..Default::default()
        },
    );
    let engine = impatient_engine();
    pull_fails(
        &engine,
        &format!("{}/busybox", stalled.addr()),
        Duration::from_secs(10),
        &[
            &format!("download of {layer}"),
            "registry sent nothing for 1 s: stalled, giving up",
        ],
    );
    assert!(!blobs(&engine).contains(&hex(layer).to_string()));
    let tmp = fs::read_dir(engine.root.join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "no partial download may stay");
}

#[test]
fn a_slow_token_server_gives_up_too() {
    let registry = Registry::start(
        &fixtures().registry_storage(),
        true,
        RegistryAuth::Token { user: None },
    );
    let token_port = registry.token_server.as_ref().unwrap().port;
    // The token server, slowed down…
    let slow_tokens = HostileProxy::start(
        token_port,
        Hostility {
            matching: "/token".into(),
            dribble: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    );
    // …and the registry's challenge sending clients to it.
    let registry_proxy = HostileProxy::start(
        registry.port,
        Hostility {
            header_rewrites: vec![(format!("127.0.0.1:{token_port}"), slow_tokens.addr())],
            ..Default::default()
        },
    );
    let engine = impatient_engine();
    pull_fails(
        &engine,
        &format!("{}/busybox", registry_proxy.addr()),
        Duration::from_secs(10),
        &[
            "token from http://127.0.0.1",
            "auth server sent ",
            "too slow",
            "giving up",
        ],
    );
    assert_nothing_stored(&engine);
}

#[test]
fn a_huge_manifest_is_refused_for_what_it_is() {
    let registry = fixture_registry();
    for announce in [true, false] {
        let huge = HostileProxy::start(
            registry.port,
            Hostility {
                matching: "/manifests/".into(),
                huge_body: Some((100 << 20, announce)),
                ..Default::default()
            },
        );
        let engine = Engine::new();
        let line = pull_fails(
            &engine,
            &format!("{}/busybox", huge.addr()),
            Duration::from_secs(20),
            &["manifest of busybox:latest is larger than 4 MiB: refusing it"],
        );
        assert!(!line.contains("cannot reach"), "{line}");
        assert_nothing_stored(&engine);
    }
}

#[test]
fn a_lying_docker_content_digest_header_is_caught() {
    let registry = fixture_registry();
    let real = fixtures().get("busybox")["digest"].as_str().unwrap();
    let fake = format!("sha256:{}", support::sha256_hex(b"not the manifest"));
    let liar = HostileProxy::start(
        registry.port,
        Hostility {
            header_rewrites: vec![(real.to_string(), fake.clone())],
            ..Default::default()
        },
    );
    let engine = Engine::new();
    pull_fails(
        &engine,
        &format!("{}/busybox", liar.addr()),
        Duration::from_secs(20),
        &[
            "digest mismatch",
            "Docker-Content-Digest",
            &fake,
            real,
            "nothing stored",
        ],
    );
    assert_nothing_stored(&engine);
    // Pulled by digest, the body is checked against the digest asked for,
    // and the header does not matter.
    engine
        .run(BIN, &["pull", &format!("{}/busybox@{real}", liar.addr())])
        .ok();
    engine.assert_store_consistent();
}

#[test]
fn localhost_in_capitals_is_still_localhost() {
    let registry = fixture_registry();
    let reference = format!("LOCALHOST:{}/busybox", registry.port);
    let engine = Engine::new();
    let out = engine.run(BIN, &["--explain", "pull", &reference]);
    let stdout = out.ok();
    // Plain HTTP, as for localhost; the name is kept as typed, as docker does.
    assert!(
        out.stderr
            .contains(&format!("GET http://localhost:{}/v2/", registry.port)),
        "{}",
        out.stderr
    );
    assert!(
        stdout.ends_with(&format!("{reference}:latest\n")),
        "{stdout}"
    );
    engine.run(BIN, &["inspect", &reference]).ok();
    engine.run(BIN, &["rmi", &reference]).ok();
    assert_eq!(blobs(&engine), Vec::<String>::new());
}

/// Pushes the fixture `busybox` to `registry` as `repo:img`, then an index
/// tagged `repo:latest` whose only entry calls that manifest an index.
/// Returns the manifest's digest.
fn push_poisoned_index(source: &Registry, registry: &Registry, repo: &str) -> String {
    let out = sh(&format!(
        "skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
         --preserve-digests docker://{}/busybox:latest docker://{}/{repo}:img",
        source.addr(),
        registry.addr()
    ));
    assert_eq!(out.code, 0, "skopeo copy: {}", out.stderr);
    let digest = fixtures().get("busybox")["digest"].as_str().unwrap();
    let manifest = sh(&format!(
        "curl -sS -H 'Accept: {OCI_MANIFEST}' http://{}/v2/{repo}/manifests/{digest}",
        registry.addr()
    ));
    assert_eq!(manifest.code, 0, "{}", manifest.stderr);
    assert_eq!(
        format!("sha256:{}", support::sha256_hex(manifest.stdout.as_bytes())),
        digest
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            // The lie: this entry is a manifest, not an index.
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": manifest.stdout.len(),
            "platform": {
                "architecture": fixtures().manifest["host_architecture"],
                "os": "linux",
            },
        }],
    });
    let dir = TempDir::new("poison");
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let put = sh(&format!(
        "curl -sS -f -X PUT -H 'Content-Type: {OCI_INDEX}' --data-binary @{} \
         http://{}/v2/{repo}/manifests/latest",
        dir.join("index.json").display(),
        registry.addr()
    ));
    assert_eq!(
        put.code, 0,
        "the registry refused the index: {}",
        put.stderr
    );
    digest.to_string()
}

#[test]
fn a_poisoned_index_is_refused_and_the_store_stays_usable() {
    let fixtures_registry = fixture_registry();
    let storage = TempDir::new("poison-storage");
    let registry = Registry::start(storage.path(), false, RegistryAuth::None);
    let manifest = push_poisoned_index(&fixtures_registry, &registry, "poison");

    let engine = Engine::new();
    let layered = format!("{}/layered", fixtures_registry.addr());
    engine.run(BIN, &["pull", &layered]).ok();
    let before = blobs(&engine);

    pull_fails(
        &engine,
        &format!("{}/poison", registry.addr()),
        Duration::from_secs(20),
        &[
            // The fixture's manifest has no mediaType field of its own: the
            // registry's Content-Type gives it away.
            &format!("manifest {manifest} has type {OCI_INDEX} according to the index entry"),
            &format!("the registry's Content-Type says {OCI_MANIFEST}"),
            "lies about its type",
            "nothing stored",
        ],
    );
    // Nothing of it entered the store: not the index, not the manifest.
    assert_eq!(blobs(&engine), before);
    engine.assert_store_consistent();
    // skopeo still reads the store, and rmi still works.
    let out = sh(&format!(
        "skopeo inspect oci:{}:{layered}:latest",
        engine.root.join("images").display()
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    engine.run(BIN, &["rmi", &layered]).ok();
    assert_eq!(blobs(&engine), Vec::<String>::new());
    // The honest manifest under its own tag pulls fine from the same place.
    engine
        .run(BIN, &["pull", &format!("{}/poison:img", registry.addr())])
        .ok();
}

#[test]
fn garbage_collection_survives_a_damaged_store() {
    let registry = fixture_registry();
    let busybox_ref = format!("{}/busybox", registry.addr());
    let layered_ref = format!("{}/layered", registry.addr());
    let busybox = fixtures().get("busybox");
    let layered = fixtures().get("layered");
    let busybox_manifest = hex(busybox["digest"].as_str().unwrap()).to_string();
    let busybox_layer = hex(busybox["layer_digests"][0].as_str().unwrap()).to_string();
    let busybox_config = hex(busybox["config_digest"].as_str().unwrap()).to_string();
    let layered_only = hex(layered["layer_digests"][5].as_str().unwrap()).to_string();

    // 1. A store poisoned by the old bug: busybox's manifest named in
    //    index.json as an *index*. Collection follows it as what it is, a
    //    manifest, and keeps what it uses.
    let engine = Engine::new();
    engine.run(BIN, &["pull", &busybox_ref]).ok();
    engine.run(BIN, &["pull", &layered_ref]).ok();
    let index_path = engine.root.join("images/index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    for entry in index["manifests"].as_array_mut().unwrap() {
        if entry["digest"]
            .as_str()
            .unwrap()
            .ends_with(&busybox_manifest)
        {
            entry["mediaType"] = OCI_INDEX.into();
        }
    }
    fs::write(&index_path, index.to_string()).unwrap();
    let out = engine.run(BIN, &["rmi", &layered_ref]);
    out.ok();
    assert!(
        out.stderr.contains("is a manifest but is named as"),
        "{}",
        out.stderr
    );
    let left = blobs(&engine);
    for kept in [&busybox_manifest, &busybox_layer, &busybox_config] {
        assert!(left.contains(kept), "{kept} must stay: {left:?}");
    }
    assert!(!left.contains(&layered_only), "layered's own layer must go");
    engine.run(BIN, &["rmi", &busybox_ref]).ok();
    assert_eq!(blobs(&engine), Vec::<String>::new());

    // 2. A document damaged by hand: busybox's manifest is no longer JSON,
    //    and a stray bad file lies in blobs/. Removing layered still
    //    collects layered's blobs, with one warning about busybox.
    let engine = Engine::new();
    engine.run(BIN, &["pull", &busybox_ref]).ok();
    engine.run(BIN, &["pull", &layered_ref]).ok();
    let dir = engine.root.join("images/blobs/sha256");
    fs::write(dir.join(&busybox_manifest), b"{\"schemaVersion\": 2, \"lay").unwrap();
    let stray = support::sha256_hex(b"stray");
    fs::write(dir.join(&stray), b"not what its name says").unwrap();
    let out = engine.run(BIN, &["rmi", &layered_ref]);
    out.ok();
    assert!(
        out.stderr.contains(&format!("sha256:{busybox_manifest}"))
            && out.stderr.contains("is damaged"),
        "{}",
        out.stderr
    );
    let left = blobs(&engine);
    assert!(!left.contains(&layered_only), "layered's own layer must go");
    assert!(!left.contains(&stray), "an unreferenced bad file goes too");
    assert!(
        left.contains(&busybox_manifest),
        "a damaged document that is still named stays (rmi it by name)"
    );
    // The damaged image is left out of `images`, with a warning; the
    // listing itself works.
    let out = engine.run(BIN, &["images"]);
    assert!(!out.ok().contains("busybox"), "{}", out.stdout);
    assert!(out.stderr.contains("skipping image"), "{}", out.stderr);
    // And `rmi` of the damaged image by its name works: the name goes,
    // and everything it alone reached is collected.
    let out = engine.run(BIN, &["rmi", &busybox_ref]);
    assert!(out.ok().contains("Untagged"), "{}", out.stdout);
    assert_eq!(blobs(&engine), Vec::<String>::new());
}
