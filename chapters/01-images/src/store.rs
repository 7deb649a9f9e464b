//! The image store: a content-addressed directory that is a valid
//! **OCI image layout**, so other tools (skopeo, umoci) can read it.
//!
//! ```text
//! ROOT/images/
//!   oci-layout            {"imageLayoutVersion": "1.0.0"}
//!   index.json            the names: one descriptor per stored image, named by
//!                         the annotation org.opencontainers.image.ref.name
//!   blobs/sha256/<hex>    every manifest, config and layer, named by digest
//! ROOT/tmp/               downloads in progress (never inside blobs/)
//! ```
//!
//! Two rules keep it consistent whatever happens: a blob appears in
//! `blobs/` only after its digest was verified (it is renamed there from
//! `tmp/`), and `index.json` names an image only after all of its blobs are
//! present. A pull killed at any moment leaves at worst some files in
//! `tmp/` and some unnamed blobs, which the next pull reuses or replaces.

use crate::digest::{Digest, DigestWriter};
use crate::durable::{self, write_atomically};
use crate::error::{Error, IoContext, Result};
use crate::explain;
use crate::manifest::{self, Descriptor, ImageConfig, Index, Manifest, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The annotation that names an image in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// For a multi-platform image, the digest of the index the name pointed to
/// (docker shows it as the image's repo digest).
pub const INDEX_DIGEST: &str = "io.crabbox.index.digest";

/// The engine root and its image store.
pub struct Store {
    root: PathBuf,
    images: PathBuf,
    tmp: PathBuf,
}

/// An image in the store, with its manifest and config read.
#[derive(Clone, Debug)]
pub struct Image {
    /// The name it is stored under, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl Image {
    /// Docker's image ID: the digest of the config.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// The digest users pull by (the index's digest for multi-platform images).
    pub fn repo_digest(&self) -> String {
        self.descriptor
            .annotations
            .get(INDEX_DIGEST)
            .cloned()
            .unwrap_or_else(|| self.descriptor.digest.to_string())
    }

    /// The size of the compressed layers plus config, as stored.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The reference this image was stored under.
    /// `None` for an image stored by ID only (loaded without a tag).
    pub fn reference(&self) -> Option<Reference> {
        if self.name.starts_with("sha256:") {
            return None;
        }
        Reference::parse(&self.name).ok()
    }
}

impl Store {
    /// Opens (creating if needed) the store under the engine root.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
            images: root.join("images"),
            tmp: root.join("tmp"),
        };
        crate::engine_root::prepare(root)?;
        let blobs = store.images.join("blobs").join("sha256");
        if !blobs.is_dir() {
            explain::step(
                "create the image store, an OCI image layout",
                Some(&format!("mkdir -p {}", blobs.display())),
            );
        }
        fs::create_dir_all(&blobs).context("creating", &blobs)?;
        fs::create_dir_all(&store.tmp).context("creating", &store.tmp)?;
        let layout = store.images.join("oci-layout");
        if !layout.exists() {
            write_atomically(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.images.join("index.json");
        if !index.exists() {
            store.write_index(&Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: vec![],
                annotations: BTreeMap::new(),
            })?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/images`, the OCI layout directory.
    pub fn layout_dir(&self) -> &Path {
        &self.images
    }

    /// `ROOT/tmp`, for work in progress on the same filesystem as the store.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.images.join("blobs").join("sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    // ANCHOR: write_blob
    /// Streams a blob into the store, verifying it on the way: the bytes go
    /// to a file in `tmp/` through a hasher, and only if their digest (and
    /// size, when known) is the expected one is the file renamed into
    /// `blobs/`. Memory use stays constant whatever the blob's size.
    pub fn write_blob(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
        reader: impl Read,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        // HEX.PID.N.partial: the PID tells a later pull whether its owner is
        // gone; N keeps two downloads of one blob from sharing a file.
        static DOWNLOADS: AtomicU64 = AtomicU64::new(0);
        let n = DOWNLOADS.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!(
            "{}.{}.{n}.partial",
            expected.hex(),
            std::process::id()
        ));
        let result = (|| {
            let file = File::create(&tmp).context("creating", &tmp)?;
            let mut writer = DigestWriter::new(BufWriter::with_capacity(256 << 10, file));
            // Never accept more than announced: a broken or hostile server
            // cannot fill the disk.
            let limit = expected_size.map_or(u64::MAX, |s| s + 1);
            let mut reader = reader.take(limit);
            let mut buf = vec![0u8; 128 << 10];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // The registry's reader gave up on a stalled or
                    // trickling transfer: not worth a retry ("broke off" is).
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        return Err(Error::new(format!(
                            "download of {expected}: {e} — nothing stored"
                        )))
                    }
                    Err(e) => {
                        return Err(Error::new(format!("download of {expected} broke off: {e}")))
                    }
                };
                writer.write_all(&buf[..n]).context("writing", &tmp)?;
                progress(n as u64);
            }
            let (digest, size, buffered) = writer.finish();
            let file = buffered
                .into_inner()
                .map_err(|e| e.into_error())
                .context("writing", &tmp)?;
            if digest != *expected || expected_size.is_some_and(|s| s != size) {
                return Err(Error::new(format!(
                    "digest mismatch for blob {expected}: received {size} bytes with digest {digest} — nothing stored"
                )));
            }
            file.sync_all().context("flushing", &tmp)?;
            let path = self.blob_path(expected);
            fs::rename(&tmp, &path).context("storing", &path)?;
            explain::step(
                &format!("{size} bytes hash to {expected}, as asked: the blob may enter the store"),
                Some(&format!("mv {} {}", tmp.display(), path.display())),
            );
            Ok(size)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
    // ANCHOR_END: write_blob

    /// Stores a small document held in memory; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            self.write_blob(&digest, Some(bytes.len() as u64), bytes, |_| {})?;
        }
        Ok(digest)
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).context("reading blob", &path)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).context("opening blob", &path)
    }

    /// Removes leftovers of downloads whose process is gone (a killed pull).
    pub fn clean_stale_downloads(&self) -> Result<()> {
        for entry in fs::read_dir(&self.tmp)
            .context("reading", &self.tmp)?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_suffix(".partial")
                .and_then(|n| n.split('.').nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid {
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
                if !alive {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    fn index_path(&self) -> PathBuf {
        self.images.join("index.json")
    }

    /// The lock that serializes changes to `index.json` and garbage collection.
    pub fn lock(&self) -> Result<durable::Lock> {
        durable::lock(&self.root.join("images.lock"))
    }

    /// Held by every pull while it writes blobs that no name reaches yet, so
    /// that garbage collection (which takes it exclusively) cannot delete them.
    pub fn pin_for_pull(&self) -> Result<durable::Lock> {
        durable::lock_shared(&self.root.join("pull.lock"))
    }

    /// The layout's `index.json`: every stored name.
    pub fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = fs::read(&path).context("reading", &path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(format!(
                "{} is damaged ({e}) — remove it and pull again",
                path.display()
            ))
        })
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec(index).expect("an index always serializes");
        write_atomically(&self.index_path(), &bytes)
    }

    // ANCHOR: set_ref
    /// Names an image: points `name` at a manifest descriptor in
    /// `index.json` (replacing what the name pointed to before).
    pub fn set_ref(&self, name: &str, mut descriptor: Descriptor) -> Result<()> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        descriptor.annotations.insert(REF_NAME.into(), name.into());
        index.manifests.push(descriptor);
        explain::step(
            &format!("name the image {name} in the layout's index.json (write to a temp file, then rename)"),
            None,
        );
        self.write_index(&index)
    }
    // ANCHOR_END: set_ref

    /// Removes a name; returns the descriptor it pointed to.
    pub fn remove_ref(&self, name: &str) -> Result<Option<Descriptor>> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let position = index
            .manifests
            .iter()
            .position(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(name));
        let removed = position.map(|i| index.manifests.remove(i));
        if removed.is_some() {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Every named image, read. An image whose manifest or config is
    /// damaged is reported on stderr and left out, so that one bad image
    /// does not make every other one unreachable (`images`, `rmi`, `run`).
    pub fn images(&self) -> Result<Vec<Image>> {
        let index = self.read_index()?;
        let mut images = Vec::new();
        for descriptor in index.manifests {
            let Some(name) = descriptor.annotations.get(REF_NAME).cloned() else {
                continue;
            };
            match self.load_image(name.clone(), descriptor) {
                Ok(image) => images.push(image),
                Err(e) => warn(&format!("skipping image {name}: {e}")),
            }
        }
        Ok(images)
    }

    /// Reads the manifest and config a descriptor points to.
    pub fn load_image(&self, name: String, descriptor: Descriptor) -> Result<Image> {
        let manifest: Manifest = serde_json::from_slice(&self.read_blob(&descriptor.digest)?)
            .map_err(|e| {
                Error::new(format!(
                    "stored manifest {} is damaged: {e}",
                    descriptor.digest
                ))
            })?;
        let config = ImageConfig::parse(&self.read_blob(&manifest.config.digest)?)?;
        Ok(Image {
            name,
            descriptor,
            manifest,
            config,
        })
    }

    // ANCHOR: find
    /// Finds an image as the user names it: a reference (`busybox`,
    /// `localhost:5000/app:v1`) or an image ID or its prefix (`d8c1a9…`).
    pub fn find(&self, name_or_id: &str) -> Result<Option<Image>> {
        if let Ok(reference) = Reference::parse(name_or_id) {
            // By name: read only that image (a damaged one is an error
            // about it, not about the others).
            let wanted = reference.store_name();
            let named = self
                .read_index()?
                .manifests
                .into_iter()
                .find(|d| d.annotations.get(REF_NAME) == Some(&wanted));
            if let Some(descriptor) = named {
                return self.load_image(wanted, descriptor).map(Some);
            }
        }
        let images = self.images()?;
        let id = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if id.len() >= 4 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matching: Vec<&Image> = images
                .iter()
                .filter(|i| i.id().hex().starts_with(id))
                .collect();
            let ids: BTreeSet<&Digest> = matching.iter().map(|i| i.id()).collect();
            if ids.len() > 1 {
                return Err(Error::new(format!(
                    "{name_or_id} matches several images — give more of the ID"
                )));
            }
            return Ok(matching.first().map(|i| (*i).clone()));
        }
        Ok(None)
    }
    // ANCHOR_END: find

    /// Like [`Store::find`], but a missing image is an error.
    pub fn get(&self, name_or_id: &str) -> Result<Image> {
        self.find(name_or_id)?.ok_or_else(|| {
            Error::new(format!(
                "no such image: {name_or_id} — see `images`, or pull it"
            ))
        })
    }

    // ANCHOR: garbage_collect
    /// Deletes every blob that no name reaches any more (mark and sweep).
    /// Layers shared with another image are reached through it and stay.
    ///
    /// It never fails as a whole because of one damaged object: a document
    /// that cannot be read, or is not what its descriptor says (the
    /// poisoned index), is reported on stderr and skipped, and
    /// the rest is collected. Failing instead would make every later `rmi`
    /// fail too, and the store would only ever grow.
    pub fn garbage_collect(&self) -> Result<Vec<Digest>> {
        let _no_pull_running = durable::lock(&self.root.join("pull.lock"))?;
        let _lock = self.lock()?;
        let mut reachable = BTreeSet::new();
        for descriptor in self.read_index()?.manifests {
            if let Some(index) = descriptor.annotations.get(INDEX_DIGEST) {
                if let Ok(d) = Digest::parse(index) {
                    reachable.insert(d);
                }
            }
            self.mark(&descriptor.digest, &descriptor.media_type, &mut reachable);
        }
        let dir = self.images.join("blobs").join("sha256");
        let mut deleted = Vec::new();
        for entry in fs::read_dir(&dir).context("reading", &dir)?.flatten() {
            let Ok(digest) =
                Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy()))
            else {
                continue;
            };
            if !reachable.contains(&digest) {
                explain::step(
                    &format!("delete unreferenced blob {digest}"),
                    Some(&format!("rm {}", entry.path().display())),
                );
                match fs::remove_file(entry.path()) {
                    Ok(()) => deleted.push(digest),
                    Err(e) => warn(&format!(
                        "could not remove unreferenced blob {}: {e}",
                        entry.path().display()
                    )),
                }
            }
        }
        Ok(deleted)
    }
    // ANCHOR_END: garbage_collect

    // ANCHOR: mark
    /// Marks a manifest or index and everything it reaches. The document
    /// is read for what it *is* (its own shape), not for what its
    /// descriptor claims; what cannot be read is reported and skipped.
    fn mark(&self, digest: &Digest, declared: &str, reachable: &mut BTreeSet<Digest>) {
        if !reachable.insert(digest.clone()) {
            return;
        }
        let path = self.blob_path(digest);
        let Ok(metadata) = fs::metadata(&path) else {
            return; // a missing blob reaches nothing
        };
        let damaged = |why: String| {
            warn(&format!(
                "stored document {digest} ({declared}) is damaged: {why}; skipped it \
                 (what only it used is collected)"
            ))
        };
        if metadata.len() > crate::registry::MAX_DOCUMENT_SIZE {
            return damaged(format!(
                "{} bytes is too large for a manifest",
                metadata.len()
            ));
        }
        let document: serde_json::Value = match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => return damaged(e),
        };
        let digest_at =
            |v: &serde_json::Value| v["digest"].as_str().and_then(|d| Digest::parse(d).ok());
        if let Some(children) = document["manifests"].as_array() {
            if !matches!(declared, OCI_INDEX | manifest::DOCKER_MANIFEST_LIST) {
                warn(&format!(
                    "stored document {digest} is an index but is named as {declared}; following it as an index"
                ));
            }
            for child in children {
                match digest_at(child) {
                    Some(d) => self.mark(&d, child["mediaType"].as_str().unwrap_or(""), reachable),
                    None => damaged(format!("an entry has no valid digest: {child}")),
                }
            }
        } else if document.get("config").is_some() || document.get("layers").is_some() {
            if !matches!(declared, OCI_MANIFEST | manifest::DOCKER_MANIFEST) {
                warn(&format!(
                    "stored document {digest} is a manifest but is named as {declared}; following it as a manifest"
                ));
            }
            let layers = document["layers"].as_array().into_iter().flatten();
            for blob in std::iter::once(&document["config"]).chain(layers) {
                match digest_at(blob) {
                    Some(d) => {
                        reachable.insert(d);
                    }
                    None if blob.is_null() => {}
                    None => damaged(format!("a descriptor has no valid digest: {blob}")),
                }
            }
        } else {
            damaged("neither a manifest nor an index".to_string());
        }
    }
    // ANCHOR_END: mark
}

/// Reports a damaged object on stderr, once per process (the same image is
/// often read several times in one command).
fn warn(message: &str) {
    static SEEN: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.insert(message.to_string()) {
        eprintln!("warning: {message}");
    }
}
