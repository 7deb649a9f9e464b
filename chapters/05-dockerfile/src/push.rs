//! `push`: publishing an image, the pull protocol run the other way.
//!
//! A registry stores what `pull` reads: blobs (layers and the config),
//! each named by its digest, and manifests, named by a tag. Pushing is
//! uploading them, in an order that matters:
//!
//! ```text
//! for each layer, then the config:
//!   HEAD /v2/<name>/blobs/<digest>            "do you have it already?"   200: skip it
//!   POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>
//!                                             "take it from <other>"      201: mounted
//!   POST /v2/<name>/blobs/uploads/            "I want to upload"          202 + Location
//!   PUT  <Location>?digest=<digest>           the bytes, in one request   201
//!     or PATCH <Location> (a chunk) … then PUT <Location>?digest=<digest>
//! last:
//!   PUT  /v2/<name>/manifests/<tag>           the manifest, its exact bytes
//! ```
//!
//! * **HEAD first.** Layers are shared: most pushes of a rebuilt image send
//!   one new layer and skip the base image's, which the registry has.
//! * **Mount.** When the same registry has the blob under *another*
//!   repository (we pushed `app` before, now we push `app-debug` with the
//!   same base), it can link it without a single byte sent. We only know
//!   where to ask from our own store: another name of ours on that
//!   registry whose image has this blob. If the registry cannot (it does
//!   not have it there after all), it answers 202 and starts an ordinary
//!   upload instead, which we continue.
//! * **Upload.** `POST` opens an upload session and answers where to send
//!   the bytes (`Location`). A blob goes in one `PUT` with its digest; a
//!   big one in `PATCH`es of a chunk each, then a `PUT` with the digest and
//!   no body that closes the session. The registry hashes what it got and
//!   refuses the upload if the digest differs: content addressing works
//!   for uploads too.
//! * **The manifest last.** A registry refuses a manifest that points at
//!   a blob it does not have (`MANIFEST_BLOB_UNKNOWN`); and the moment a
//!   manifest is stored, its tag is visible to everyone who pulls. Last,
//!   a tag never names an image that cannot be pulled whole: the same
//!   rule as the store's, where a name is written after every blob.
//!
//! The manifest is sent as the very bytes in our store, with its own media
//! type: its digest is the image's name, so re-encoding the JSON would
//! publish another image. For the same reason a pushed image pulled back
//! has the same digest.

use ch01_images::cli::GlobalArgs;
use ch01_images::digest::Digest;
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain::{self, shell_quote};
use ch01_images::manifest::Descriptor;
use ch01_images::reference::Reference;
use ch01_images::registry::{percent_encode, Access, Payload, Registry};
use ch01_images::store::{Image, Store, INDEX_DIGEST};
use std::collections::BTreeSet;
use std::io::Read;

/// Blobs up to this size are sent in one PUT; bigger ones in PATCHes of
/// this size. (One chunk is held in memory at a time.)
const CHUNK_SIZE: u64 = 32 << 20;

/// What happened to one blob, in docker's words.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    AlreadyExists,
    MountedFrom(String),
    Pushed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::AlreadyExists => f.write_str("Layer already exists"),
            Outcome::MountedFrom(from) => write!(f, "Mounted from {from}"),
            Outcome::Pushed => f.write_str("Pushed"),
        }
    }
}

/// Another repository of the same registry, and the blobs our store knows
/// it has (the blobs of our images named there).
struct MountSource {
    repository: String,
    blobs: BTreeSet<Digest>,
}

// ANCHOR: push_command
/// `push NAME[:TAG]`: uploads the image of that name to the registry the
/// name points at, as docker prints it (`-q`: only the pushed name).
pub fn push_command(globals: &GlobalArgs, name: &str, quiet: bool) -> Result<i32> {
    let reference = Reference::parse(name)?;
    if reference.digest.is_some() {
        return Err(Error::new(format!(
            "cannot push a digest reference: {name} — push a tag, NAME[:TAG]"
        )));
    }
    let tag = reference.manifest_reference().to_string();
    let say = |line: &str| {
        if !quiet {
            println!("{line}");
        }
    };
    if !name_has_tag(name) {
        say(&format!("Using default tag: {tag}"));
    }
    let store = globals.store()?;
    let image = store.find(&reference.store_name())?.ok_or_else(|| {
        Error::new(format!(
            "An image does not exist locally with the tag: {} — see `images`, or name one with `tag SOURCE {}`",
            reference.familiar_repository(),
            reference.familiar()
        ))
    })?;
    // Garbage collection (`rmi`) waits while this is held: the blobs we
    // are about to read stay in the store until the push ends.
    let _pin = store.pin_for_pull()?;
    say(&format!(
        "The push refers to repository [{}]",
        reference.repository()
    ));
    if let Some(index) = image.descriptor.annotations.get(INDEX_DIGEST) {
        eprintln!(
            "note: {} was pulled from a multi-platform index ({index}) and only this machine's image is here: pushing {} ({}) alone",
            reference.familiar(),
            image.descriptor.digest,
            image.config.platform()
        );
    }
    let registry =
        Registry::connect_with_access(&reference, &globals.registry_options(), Access::Push)?;
    let sources = mount_sources(&store, &reference)?;
    let chunk_size = chunk_size()?;

    // Every blob before the manifest: the layers (one line each, as
    // docker prints them), then the config.
    for layer in &image.manifest.layers {
        let outcome = push_blob(&store, &registry, layer, &sources, chunk_size)?;
        say(&format!("{}: {outcome}", layer.digest.short()));
    }
    let outcome = push_blob(
        &store,
        &registry,
        &image.manifest.config,
        &sources,
        chunk_size,
    )?;
    let config = match outcome {
        Outcome::AlreadyExists => "the registry has it already".to_string(),
        Outcome::MountedFrom(from) => format!("mounted from {from}"),
        Outcome::Pushed => "pushed".to_string(),
    };
    explain::step(
        &format!("the config {}: {config}", image.manifest.config.digest),
        None,
    );

    let (digest, size) = put_manifest(&store, &registry, &image, &tag)?;
    if quiet {
        println!("{reference}");
    } else {
        say(&format!("{tag}: digest: {digest} size: {size}"));
    }
    Ok(0)
}
// ANCHOR_END: push_command

/// Did the user write a tag (`app:v1`), or is `latest` implied (`app`)?
/// A colon before the last `/` is a port (`localhost:5000/app`).
fn name_has_tag(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':')
}

/// The other repositories of the target's registry that our store knows,
/// each with the blobs of our images named there: where a mount may come
/// from.
fn mount_sources(store: &Store, target: &Reference) -> Result<Vec<MountSource>> {
    let mut sources: Vec<MountSource> = Vec::new();
    for image in store.images()? {
        let Some(named) = image.reference() else {
            continue;
        };
        if !named.domain.eq_ignore_ascii_case(&target.domain) || named.path == target.path {
            continue;
        }
        let blobs = std::iter::once(&image.manifest.config)
            .chain(&image.manifest.layers)
            .map(|d| d.digest.clone());
        match sources.iter_mut().find(|s| s.repository == named.path) {
            Some(source) => source.blobs.extend(blobs),
            None => sources.push(MountSource {
                repository: named.path.clone(),
                blobs: blobs.collect(),
            }),
        }
    }
    Ok(sources)
}

/// `CRABBOX_PUSH_CHUNK_SIZE` (bytes), or [`CHUNK_SIZE`]: lets a learner
/// (and the tests) see a chunked upload with a small image.
fn chunk_size() -> Result<u64> {
    match std::env::var("CRABBOX_PUSH_CHUNK_SIZE") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::new(format!(
                    "CRABBOX_PUSH_CHUNK_SIZE={value:?} is not a number of bytes above 0"
                ))
            }),
        _ => Ok(CHUNK_SIZE),
    }
}

// ANCHOR: push_blob
/// One blob: skipped if the registry has it, mounted if another of its
/// repositories has it, uploaded otherwise.
fn push_blob(
    store: &Store,
    registry: &Registry,
    blob: &Descriptor,
    sources: &[MountSource],
    chunk_size: u64,
) -> Result<Outcome> {
    let digest = &blob.digest;
    if !store.has_blob(digest) {
        return Err(Error::new(format!(
            "blob {digest} is not in the store — the image is incomplete; pull or build it again"
        )));
    }
    if blob_exists(registry, digest)? {
        return Ok(Outcome::AlreadyExists);
    }
    let source = sources.iter().find(|s| s.blobs.contains(digest));
    let location = match source {
        Some(source) => match mount(registry, digest, &source.repository)? {
            None => return Ok(Outcome::MountedFrom(source.repository.clone())),
            Some(location) => location,
        },
        None => start_upload(registry)?,
    };
    upload(store, registry, blob, location, chunk_size)?;
    Ok(Outcome::Pushed)
}
// ANCHOR_END: push_blob

/// `HEAD /v2/<name>/blobs/<digest>`: 200 if the registry has it, 404 if not.
fn blob_exists(registry: &Registry, digest: &Digest) -> Result<bool> {
    explain::step(&format!("does the registry have {digest} already?"), None);
    let url = format!(
        "{}/v2/{}/blobs/{digest}",
        registry.base_url(),
        registry.repository()
    );
    let mut response = registry.request("HEAD", &url, &[], None)?;
    if response.status().as_u16() == 404 {
        return Ok(false);
    }
    let what = format!("{}@{digest}", registry.repository());
    registry.check_status(&mut response, &what, "blob")?;
    Ok(true)
}

// ANCHOR: mount
/// Asks the registry to link `digest` from its repository `from`: `None`
/// when it did (201), or the upload it started instead (202), to go on
/// with.
fn mount(registry: &Registry, digest: &Digest, from: &str) -> Result<Option<String>> {
    explain::step(
        &format!("our store knows {digest} from {from} on this registry: ask for a mount"),
        None,
    );
    let url = format!(
        "{}/v2/{}/blobs/uploads/?mount={}&from={}",
        registry.base_url(),
        registry.repository(),
        percent_encode(digest.as_str()),
        percent_encode(from)
    );
    let mut response = registry.request("POST", &url, &[], None)?;
    match response.status().as_u16() {
        201 => Ok(None),
        202 => location(registry, &response).map(Some),
        // Not allowed to read `from` (a token scoped to our repository
        // only, say): docker then uploads, and so do we.
        401 | 403 => {
            explain::step("the mount was refused: upload the blob instead", None);
            start_upload(registry).map(Some)
        }
        _ => {
            let what = format!("{}@{digest}", registry.repository());
            registry.check_status(&mut response, &what, "blob")?;
            Err(unexpected(
                registry,
                "POST",
                &url,
                response.status().as_u16(),
            ))
        }
    }
}
// ANCHOR_END: mount

/// `POST /v2/<name>/blobs/uploads/`: opens an upload session; the answer's
/// `Location` says where its bytes go.
fn start_upload(registry: &Registry) -> Result<String> {
    let url = format!(
        "{}/v2/{}/blobs/uploads/",
        registry.base_url(),
        registry.repository()
    );
    let mut response = registry.request("POST", &url, &[], None)?;
    if response.status().as_u16() == 202 {
        return location(registry, &response);
    }
    registry.check_status(&mut response, registry.repository(), "repository")?;
    Err(unexpected(
        registry,
        "POST",
        &url,
        response.status().as_u16(),
    ))
}

// ANCHOR: upload
/// Sends the blob's bytes to the upload session at `location`: in one PUT
/// if it is small, else in PATCHes of `chunk_size`, closed by a PUT.
/// Each step is sent once (a session must not receive a chunk twice); a
/// push that fails part-way is simply run again, and the blobs that made
/// it are skipped by their HEAD.
fn upload(
    store: &Store,
    registry: &Registry,
    blob: &Descriptor,
    mut location: String,
    chunk_size: u64,
) -> Result<()> {
    let digest = &blob.digest;
    let path = store.blob_path(digest);
    let size = std::fs::metadata(&path).context("reading", &path)?.len();
    let octets = ("Content-Type", "application/octet-stream");
    if size <= chunk_size {
        explain::step(
            &format!("send {digest} ({size} bytes) in one request, with its digest"),
            None,
        );
        let bytes = store.read_blob(digest)?;
        let payload = Payload {
            bytes: &bytes,
            shown_as: format!("@{}", shell_quote(&path.display().to_string())),
        };
        let url = with_query(
            &location,
            &format!("digest={}", percent_encode(digest.as_str())),
        );
        let response = registry.request_once("PUT", &url, &[octets], Some(&payload))?;
        return finish_upload(registry, response, digest);
    }

    let mut file = store.open_blob(digest)?;
    let mut chunk = Vec::with_capacity(chunk_size as usize);
    let mut offset = 0u64;
    while offset < size {
        chunk.clear();
        (&mut file)
            .take(chunk_size)
            .read_to_end(&mut chunk)
            .context("reading", &path)?;
        if chunk.is_empty() {
            return Err(Error::new(format!(
                "blob {} ended at {offset} of {size} bytes while it was sent — was it changed?",
                path.display()
            )));
        }
        let end = offset + chunk.len() as u64 - 1;
        explain::step(
            &format!("send bytes {offset}-{end} of {digest} ({size} bytes)"),
            None,
        );
        // The OCI distribution spec's range: first-last, inclusive, no unit.
        let range = format!("{offset}-{end}");
        let payload = Payload {
            bytes: &chunk,
            shown_as: format!(
                "@<(tail -c +{} {} | head -c {})",
                offset + 1,
                shell_quote(&path.display().to_string()),
                chunk.len()
            ),
        };
        let headers = [octets, ("Content-Range", range.as_str())];
        let mut response = registry.request_once("PATCH", &location, &headers, Some(&payload))?;
        if response.status().as_u16() != 202 {
            let what = format!("{}@{digest}", registry.repository());
            registry.check_status(&mut response, &what, "blob upload")?;
            return Err(unexpected(
                registry,
                "PATCH",
                &location,
                response.status().as_u16(),
            ));
        }
        // The registry says how much it holds now; it must be all we sent.
        if let Some(held) = header(&response, "range") {
            if !held.ends_with(&format!("-{end}")) {
                return Err(Error::new(format!(
                    "{} holds bytes {held} of the upload of {digest}, but {range} were sent — push again",
                    registry.registry()
                )));
            }
        }
        // Each answer names where the next request goes.
        location = self::location(registry, &response)?;
        offset = end + 1;
    }
    explain::step(
        &format!("all {size} bytes sent: close the upload with the digest"),
        None,
    );
    let url = with_query(
        &location,
        &format!("digest={}", percent_encode(digest.as_str())),
    );
    let response = registry.request_once("PUT", &url, &[], None)?;
    finish_upload(registry, response, digest)
}
// ANCHOR_END: upload

/// The answer to the PUT that closes an upload: 201, for the digest we
/// named (the registry hashed the bytes and agrees).
fn finish_upload(
    registry: &Registry,
    mut response: ureq::http::Response<ureq::Body>,
    digest: &Digest,
) -> Result<()> {
    let what = format!("{}@{digest}", registry.repository());
    registry
        .check_status(&mut response, &what, "blob upload")
        .map_err(|e| Error::new(format!("upload of {digest}: {}", e.message())))?;
    check_announced(registry, &response, digest, "blob")
}

// ANCHOR: put_manifest
/// `PUT /v2/<name>/manifests/<tag>`: the manifest's stored bytes, with
/// its own media type. Returns its digest and size, as docker prints them.
fn put_manifest(
    store: &Store,
    registry: &Registry,
    image: &Image,
    tag: &str,
) -> Result<(Digest, usize)> {
    let bytes = store.read_blob(&image.descriptor.digest)?;
    let digest = Digest::of(&bytes);
    explain::step(
        &format!("every blob is there: now the manifest, which makes the tag {tag} visible"),
        None,
    );
    let url = format!(
        "{}/v2/{}/manifests/{tag}",
        registry.base_url(),
        registry.repository()
    );
    let payload = Payload {
        bytes: &bytes,
        shown_as: format!(
            "@{}",
            shell_quote(&store.blob_path(&digest).display().to_string())
        ),
    };
    let content_type = ("Content-Type", image.descriptor.media_type.as_str());
    let mut response = registry.request("PUT", &url, &[content_type], Some(&payload))?;
    let what = format!("{}:{tag}", registry.repository());
    registry.check_status(&mut response, &what, "manifest")?;
    check_announced(registry, &response, &digest, "manifest")?;
    Ok((digest, bytes.len()))
}
// ANCHOR_END: put_manifest

/// The registry names what it stored in `Docker-Content-Digest`; when it
/// does, that must be the digest we sent.
fn check_announced(
    registry: &Registry,
    response: &ureq::http::Response<ureq::Body>,
    digest: &Digest,
    kind: &str,
) -> Result<()> {
    match header(response, "docker-content-digest") {
        Some(announced) if announced != digest.as_str() => Err(Error::new(format!(
            "{} stored the {kind} {digest} as {announced} — nothing was tagged; push again",
            registry.registry()
        ))),
        _ => Ok(()),
    }
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// The `Location` of an answer, as a full URL.
fn location(registry: &Registry, response: &ureq::http::Response<ureq::Body>) -> Result<String> {
    let location = header(response, "location").ok_or_else(|| {
        Error::new(format!(
            "{} started an upload but did not say where to send it (no Location header)",
            registry.registry()
        ))
    })?;
    Ok(resolve_location(
        registry.base_url(),
        registry.repository(),
        &location,
    ))
}

/// Registries answer with a full URL (`http://host/v2/…`), a path
/// (`/v2/…`), or rarely a path relative to the uploads URL.
fn resolve_location(base: &str, repository: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/v2/{repository}/blobs/uploads/{location}")
    }
}

/// Adds a query parameter to a URL that may have a query already (an
/// upload's `Location` often carries the session's `_state`).
fn with_query(url: &str, parameter: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameter}")
}

fn unexpected(registry: &Registry, method: &str, url: &str, status: u16) -> Error {
    Error::new(format!(
        "{} answered HTTP {status} to {method} {url}, which the upload protocol does not expect",
        registry.registry()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_full_urls() {
        let base = "http://127.0.0.1:5000";
        assert_eq!(
            resolve_location(
                base,
                "app",
                "http://127.0.0.1:5000/v2/app/blobs/uploads/u?_state=x"
            ),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u?_state=x"
        );
        assert_eq!(
            resolve_location(base, "app", "/v2/app/blobs/uploads/u"),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u"
        );
        assert_eq!(
            resolve_location(base, "team/app", "u"),
            "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u"
        );
    }

    #[test]
    fn the_digest_joins_an_existing_query() {
        assert_eq!(with_query("http://h/u", "digest=d"), "http://h/u?digest=d");
        assert_eq!(
            with_query("http://h/u?_state=s", "digest=d"),
            "http://h/u?_state=s&digest=d"
        );
    }

    #[test]
    fn a_tag_is_a_colon_after_the_last_slash() {
        assert!(name_has_tag("app:v1"));
        assert!(name_has_tag("localhost:5000/app:v1"));
        assert!(!name_has_tag("localhost:5000/app"));
        assert!(!name_has_tag("app"));
    }

    #[test]
    fn outcomes_in_dockers_words() {
        assert_eq!(Outcome::AlreadyExists.to_string(), "Layer already exists");
        assert_eq!(
            Outcome::MountedFrom("team/app".into()).to_string(),
            "Mounted from team/app"
        );
        assert_eq!(Outcome::Pushed.to_string(), "Pushed");
    }
}
