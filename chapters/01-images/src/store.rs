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
//! The second rule is kept in one place, [`Store::commit_manifest`], the
//! only way an image gets a name (`pull`, and through
//! [`Store::commit_image`], `load` and chapter 5's `build`).

use crate::digest::{Digest, DigestWriter};
use crate::durable::{self, write_atomically};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::explain;
use crate::manifest::{
    self, Descriptor, ImageConfig, Index, Manifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
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
                    // trickling transfer: not worth a retry.
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        return Err(Error::new(format!(
                            "download of {expected}: {e} — nothing stored"
                        )))
                    }
                    // The connection went away mid-way: the next attempt
                    // may work, and `pull` retries on this kind.
                    Err(e) => {
                        return Err(Error::new(format!("download of {expected} broke off: {e}"))
                            .with_kind(ErrorKind::BrokeOff))
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

    /// Held by every pull (and `load`, and chapter 5's `build`) while it
    /// writes blobs that no name reaches yet, so that garbage collection
    /// (which takes it exclusively) cannot delete them.
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

    // ANCHOR: commit
    /// Commits an image made on this machine (`load`, and chapter 5's
    /// `build`): its layers are in the store already (see
    /// [`Store::import_layer`]); this stores the config, assembles an OCI
    /// manifest for it and the layers, stores that, and names it `name`.
    /// `layers` are the manifest's layer descriptors, bottom first, one per
    /// diff ID of the config. The caller holds [`Store::pin_for_pull`]
    /// from before it stores the first layer: until the name is written,
    /// no name reaches those blobs, and garbage collection would take them.
    pub fn commit_image(
        &self,
        name: &str,
        config_bytes: &[u8],
        layers: &[Descriptor],
    ) -> Result<Image> {
        let config = ImageConfig::parse(config_bytes)?;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(Error::new(format!(
                "cannot commit {name}: its config lists {} layers, but {} were given",
                config.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        self.put_blob(config_bytes)?;
        let manifest =
            Manifest::assemble(Descriptor::of(OCI_CONFIG, config_bytes), layers.to_vec());
        self.commit_manifest(name, &manifest.to_bytes(), OCI_MANIFEST, None)
    }

    /// Names a manifest whose config and layers are all in the store: stores
    /// the manifest's bytes as they are (and the index it was chosen from,
    /// if any), then points `name` at it. This is the one place an image
    /// gets a name: `pull` calls it with the registry's own bytes (their
    /// digest is the image's name there), [`Store::commit_image`] with
    /// a manifest it assembled. A blob missing here is refused, so that a
    /// name never points at an image whose blobs are missing.
    pub fn commit_manifest(
        &self,
        name: &str,
        manifest_bytes: &[u8],
        media_type: &str,
        index_bytes: Option<&[u8]>,
    ) -> Result<Image> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes).map_err(|e| {
            Error::new(format!(
                "cannot name {name}: its manifest is malformed: {e}"
            ))
        })?;
        let blobs = std::iter::once(&manifest.config).chain(&manifest.layers);
        if let Some(missing) = blobs.map(|d| &d.digest).find(|d| !self.has_blob(d)) {
            return Err(Error::new(format!(
                "cannot name {name}: its blob {missing} is not in the store"
            )));
        }
        let config = ImageConfig::parse(&self.read_blob(&manifest.config.digest)?)?;
        let mut descriptor = Descriptor::new(
            media_type,
            self.put_blob(manifest_bytes)?,
            manifest_bytes.len() as u64,
        );
        descriptor.platform = Some(config.platform());
        if let Some(index_bytes) = index_bytes {
            let index = self.put_blob(index_bytes)?;
            descriptor
                .annotations
                .insert(INDEX_DIGEST.into(), index.to_string());
        }
        self.set_ref(name, descriptor.clone())?;
        descriptor.annotations.insert(REF_NAME.into(), name.into());
        Ok(Image {
            name: name.to_string(),
            descriptor,
            manifest,
            config,
        })
    }
    // ANCHOR_END: commit

    // ANCHOR: import_layer
    /// Stores one layer file (a tar, gzip-compressed or not) as a blob,
    /// after checking that its uncompressed content is `diff_id`, the
    /// digest the image's config will promise for it. Returns the
    /// descriptor to list in a manifest. `load` imports each layer of an
    /// archive this way; chapter 5's `build`, each layer it makes.
    pub fn import_layer(&self, path: &Path, diff_id: &Digest) -> Result<Descriptor> {
        let compressed = {
            let mut magic = [0u8; 2];
            let n = File::open(path)
                .context("opening", path)?
                .read(&mut magic)
                .unwrap_or(0);
            n == 2 && magic == [0x1f, 0x8b]
        };
        // Hash the file as it is (its blob name) and as a tar (its diff ID).
        let mut as_stored = DigestWriter::new(std::io::sink());
        std::io::copy(
            &mut File::open(path).context("opening", path)?,
            &mut as_stored,
        )
        .context("reading", path)?;
        let (digest, size, _) = as_stored.finish();
        let mut as_tar = DigestWriter::new(std::io::sink());
        let mut reader = crate::archive::decompress(
            std::io::BufReader::new(File::open(path).context("opening", path)?),
            "",
            &digest.to_string(),
        )?;
        std::io::copy(&mut reader, &mut as_tar)
            .map_err(|e| Error::new(format!("reading layer {}: {e}", path.display())))?;
        let (uncompressed_digest, _, _) = as_tar.finish();
        if &uncompressed_digest != diff_id {
            return Err(Error::new(format!(
                "layer {} does not match its diff ID {diff_id} (it hashes to {uncompressed_digest}) \
                 — the file is damaged, nothing stored",
                path.display()
            )));
        }
        if !self.has_blob(&digest) {
            self.write_blob(
                &digest,
                Some(size),
                File::open(path).context("opening", path)?,
                |_| {},
            )?;
        }
        let media_type = if compressed {
            manifest::OCI_LAYER_GZIP
        } else {
            manifest::OCI_LAYER_TAR
        };
        Ok(Descriptor::new(media_type, digest, size))
    }
    // ANCHOR_END: import_layer

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
            .map_err(|e| Error::new(damaged(&descriptor.digest, &descriptor.media_type, e)))?;
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
        reachable.extend(self.pinned_blobs());
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

    /// Keeps blobs that no name reaches from garbage collection, for
    /// `owner` (chapter 5's build cache keeps the layers of steps it may
    /// reuse, whether an image still names them or not). Replaces what
    /// `owner` pinned before; an empty list unpins all.
    pub fn pin_blobs(&self, owner: &str, digests: &[Digest]) -> Result<()> {
        let dir = self.root.join("blob-pins");
        let path = dir.join(format!("{owner}.json"));
        if digests.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(crate::error::io_error("removing", &path, e))
                }
                _ => Ok(()),
            };
        }
        fs::create_dir_all(&dir).context("creating", &dir)?;
        let bytes = serde_json::to_vec(digests).expect("digests serialize");
        write_atomically(&path, &bytes)
    }

    /// Every blob some owner pinned (see [`Store::pin_blobs`]).
    fn pinned_blobs(&self) -> Vec<Digest> {
        let dir = self.root.join("blob-pins");
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Vec<Digest>>(&b).ok())
            .flatten()
            .collect()
    }

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
                "{}; skipped it (what only it used is collected)",
                damaged(digest, declared, why)
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

/// The one line for a stored document that is not what its descriptor
/// says (not JSON, cut short, of another shape).
fn damaged(digest: &Digest, media_type: &str, why: impl std::fmt::Display) -> String {
    format!("stored document {digest} ({media_type}) is damaged: {why}")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh store under the system's temporary directory.
    struct TestStore {
        base: PathBuf,
        store: Store,
    }

    impl TestStore {
        fn new(label: &str) -> TestStore {
            static N: AtomicU64 = AtomicU64::new(0);
            let base = std::env::temp_dir().join(format!(
                "crabbox-store-{label}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let store = Store::open(&base.join("root")).unwrap();
            TestStore { base, store }
        }
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    /// An uncompressed layer tar holding one file.
    fn layer_tar(content: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "hello.txt", content).unwrap();
        tar.into_inner().unwrap()
    }

    fn config_for(diff_ids: &[&Digest]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    #[test]
    fn an_imported_layer_and_a_config_commit_to_a_named_image() {
        let t = TestStore::new("commit");
        let tar = layer_tar(b"hello\n");
        let path = t.base.join("layer.tar");
        fs::write(&path, &tar).unwrap();
        let diff_id = Digest::of(&tar);

        // A layer that is not what the config will promise is refused.
        let wrong = Digest::of(b"something else");
        let err = t.store.import_layer(&path, &wrong).unwrap_err();
        assert!(err.message().contains("diff ID"), "{}", err.message());
        assert!(!t.store.has_blob(&diff_id), "a refused layer was stored");

        let layer = t.store.import_layer(&path, &diff_id).unwrap();
        assert_eq!(layer.media_type, manifest::OCI_LAYER_TAR);
        assert_eq!(
            layer.digest, diff_id,
            "an uncompressed layer's digest is its diff ID"
        );
        assert!(t.store.has_blob(&layer.digest));

        let config = config_for(&[&diff_id]);
        let name = Reference::parse("localhost:5000/made:v1")
            .unwrap()
            .store_name();
        let image = t
            .store
            .commit_image(&name, &config, std::slice::from_ref(&layer))
            .unwrap();
        assert_eq!(image.id(), &Digest::of(&config));
        assert_eq!(image.manifest.layers, vec![layer.clone()]);
        assert_eq!(image.descriptor.media_type, OCI_MANIFEST);
        assert_eq!(
            image.descriptor.platform.as_ref().map(|p| p.to_string()),
            Some("linux/amd64".to_string())
        );
        // What commit_image returns is what the store reads back.
        let found = t.store.get(&name).unwrap();
        assert_eq!(found.descriptor, image.descriptor);
        assert_eq!(found.manifest.layers, image.manifest.layers);
        assert_eq!(found.config.rootfs.diff_ids, vec![diff_id.clone()]);
        // Committing the same parts again names the same manifest.
        let again = t
            .store
            .commit_image("sha256:other", &config, &[layer])
            .unwrap();
        assert_eq!(again.descriptor.digest, image.descriptor.digest);
    }

    #[test]
    fn a_commit_never_names_an_image_whose_blobs_are_missing() {
        let t = TestStore::new("missing");
        let tar = layer_tar(b"never stored\n");
        let diff_id = Digest::of(&tar);
        let absent = Descriptor::new(manifest::OCI_LAYER_TAR, diff_id.clone(), tar.len() as u64);
        let name = "localhost:5000/broken:v1";
        let err = t
            .store
            .commit_image(name, &config_for(&[&diff_id]), &[absent])
            .unwrap_err();
        assert!(
            err.message().contains("not in the store"),
            "{}",
            err.message()
        );
        // A config and a layer list that disagree are refused too.
        let err = t
            .store
            .commit_image(name, &config_for(&[&diff_id]), &[])
            .unwrap_err();
        assert!(err.message().contains("1 layers"), "{}", err.message());
        assert!(t.store.read_index().unwrap().manifests.is_empty());
    }

    /// A reader that gives some bytes, then fails as `kind`.
    struct Failing(std::io::ErrorKind, bool);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if std::mem::replace(&mut self.1, true) {
                return Err(std::io::Error::new(self.0, "test"));
            }
            buf[..4].copy_from_slice(b"abcd");
            Ok(4)
        }
    }

    /// `pull` retries on the kind, not on the words of the message.
    #[test]
    fn a_transfer_that_broke_off_says_so_by_its_kind() {
        let t = TestStore::new("kinds");
        let digest = Digest::of(b"abcdefgh");
        let write = |kind| {
            t.store
                .write_blob(&digest, Some(8), Failing(kind, false), |_| {})
                .unwrap_err()
                .kind()
        };
        assert_eq!(
            write(std::io::ErrorKind::ConnectionReset),
            ErrorKind::BrokeOff
        );
        assert_eq!(
            write(std::io::ErrorKind::UnexpectedEof),
            ErrorKind::BrokeOff
        );
        // Too slow is not worth a retry, nor is content that is not what was asked.
        assert_eq!(write(std::io::ErrorKind::TimedOut), ErrorKind::Other);
        let mismatch = t
            .store
            .write_blob(&digest, Some(4), &b"abcd"[..], |_| {})
            .unwrap_err();
        assert_eq!(mismatch.kind(), ErrorKind::Other);
        assert!(!t.store.has_blob(&digest));
        assert_eq!(fs::read_dir(t.store.tmp_dir()).unwrap().count(), 0);
    }
}
