//! The layer store: each layer unpacked **once**, shared by everything.
//!
//! `ROOT/layers/<diff id hex>/` holds one layer's files, ready to be an
//! overlayfs lower directory. Every image that has this layer, and every
//! container made from those images, uses this same directory, read-only.
//! Ten containers of one image cost one copy of its files, not ten: this is
//! what "layers are shared" means on disk.
//!
//! A layer is named by its **diff ID**, the sha256 of its *uncompressed*
//! tar (listed in the image config), not by its blob digest (which depends
//! on how it was compressed). We check the diff ID while unpacking: the
//! directory is built under a temporary name and renamed into place only
//! when the whole stream hashed to the expected diff ID. A damaged layer
//! leaves nothing behind; a later unpack starts clean.

use crate::pipeline::apply_layer_blob;
use crate::unpack::Mode;
use ch01_images::digest::{Digest, DigestWriter};
use ch01_images::durable::{self, Flush};
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use ch01_images::manifest::Descriptor;
use ch01_images::store::{Image, Store};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `ROOT/layers/`: unpacked layers, shared.
pub struct LayerStore {
    dir: PathBuf,
}

/// Hashes a stream while it is read: the diff ID check.
pub struct HashingReader<R> {
    inner: R,
    hasher: DigestWriter<std::io::Sink>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: DigestWriter::new(std::io::sink()),
        }
    }

    pub fn digest(self) -> Digest {
        self.hasher.finish().0
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Each layer blob of an image with the diff ID its config gives it; an
/// image whose manifest and config disagree on the count is refused.
pub fn layers_with_diff_ids(image: &Image) -> Result<Vec<(&Descriptor, &Digest)>> {
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(Error::new(format!(
            "image {} is inconsistent: {} layers in the manifest, {} diff IDs in the config",
            image.name,
            image.manifest.layers.len(),
            diff_ids.len()
        )));
    }
    Ok(image.manifest.layers.iter().zip(diff_ids).collect())
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore> {
        ch01_images::engine_root::prepare(root)?;
        let dir = root.join("layers");
        fs::create_dir_all(dir.join("l")).context("creating", &dir)?;
        Ok(LayerStore { dir })
    }

    /// The store whose directory is `dir` (already created).
    pub fn open_at(dir: &Path) -> LayerStore {
        LayerStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the layer with this diff ID lives once unpacked.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// A short name for the layer, `l/<12 hex>` relative to the store: the
    /// overlay mount options must fit in one page (4096 bytes), and short
    /// names let an image of hundreds of layers mount.
    pub fn short_name(&self, diff_id: &Digest) -> String {
        format!("l/{}", diff_id.short())
    }

    // ANCHOR: ensure_image
    /// Makes sure every layer of `image` is unpacked; returns their
    /// directories from the bottom layer to the top one.
    pub fn ensure_image(&self, store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
        self.ensure_layers(store, &layers_with_diff_ids(image)?)
    }

    /// Makes sure each of `layers` (its blob and its diff ID, bottom first)
    /// is unpacked; returns their directories in the same order. They need
    /// not be an image's: a build step stands on its parent's layers.
    pub fn ensure_layers(
        &self,
        store: &Store,
        layers: &[(&Descriptor, &Digest)],
    ) -> Result<Vec<PathBuf>> {
        let _lock = self.lock()?;
        self.unpack_missing(store, layers)
    }

    /// The work of [`LayerStore::ensure_layers`], for a caller that holds
    /// the lock already.
    fn unpack_missing(
        &self,
        store: &Store,
        layers: &[(&Descriptor, &Digest)],
    ) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for (layer, diff_id) in layers {
            let dir = self.layer_dir(diff_id);
            if !dir.is_dir() {
                self.unpack_layer(store, layer, diff_id)?;
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }
    // ANCHOR_END: ensure_image

    // ANCHOR: unpack_layer
    /// Unpacks one layer into `layers/<hex>`, verifying its diff ID.
    pub fn unpack_layer(
        &self,
        store: &Store,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<PathBuf> {
        let dir = self.layer_dir(diff_id);
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{}", diff_id.short(), std::process::id()));
        crate::unpack::remove_any(&tmp)?;
        fs::create_dir(&tmp).context("creating", &tmp)?;
        explain::step(
            &format!("unpack layer {} into its own directory (once; every image and container shares it)", layer.digest),
            Some(&format!("mkdir {d} && tar -xzf {} -C {d}", store.blob_path(&layer.digest).display(), d = dir.display())),
        );
        let result = (|| {
            let (_, got) = apply_layer_blob(store, layer, &tmp, Mode::Overlay)?;
            if &got != diff_id {
                return Err(Error::new(format!(
                    "layer {} does not match its diff ID: expected {diff_id}, got {got} — nothing kept; pull the image again",
                    layer.digest
                )));
            }
            fs::rename(&tmp, &dir).context("renaming into place", &dir)?;
            self.link_short_name(diff_id)?;
            Ok(dir.clone())
        })();
        if result.is_err() {
            let _ = crate::unpack::remove_any(&tmp);
        }
        result
    }
    // ANCHOR_END: unpack_layer

    /// The short link `l/<12 hex>` the overlay mount names a layer by.
    fn link_short_name(&self, diff_id: &Digest) -> Result<()> {
        let link = self.dir.join(self.short_name(diff_id));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../{}", diff_id.hex()), &link)
            .context("creating", &link)
    }

    // ANCHOR: adopt
    /// Makes `dir`, a directory already in overlay notation (the writable
    /// layer of a build step, whose diff ID is `diff_id`), the layer
    /// directory of `diff_id`, by renaming it: no need to unpack the blob
    /// just made from it. `dir` must be on the layer store's filesystem.
    /// If that layer is here already (an identical step of another
    /// build), `dir` is deleted instead. Returns the layer's directory.
    pub fn adopt(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf> {
        let _lock = self.lock()?;
        let layer = self.layer_dir(diff_id);
        if layer.is_dir() {
            crate::unpack::remove_any(dir)?;
        } else {
            explain::step(
                &format!("keep the step's upper directory as layer {diff_id} (no unpacking)"),
                Some(&format!("mv {} {}", dir.display(), layer.display())),
            );
            fs::rename(dir, &layer).context("renaming into place", &layer)?;
        }
        self.link_short_name(diff_id)?;
        Ok(layer)
    }
    // ANCHOR_END: adopt

    // ANCHOR: users
    /// Unpacks what is missing of `layers` and records that the root
    /// filesystem in `dir` uses them, so that pruning keeps them while it
    /// exists (a mount, a container, a build step). Both happen in one
    /// critical section under the lock that pruning takes too: a prune
    /// sees the layers together with their user, never the layers alone
    /// (which it would delete between our unpacking and our registering).
    /// `flush`: whether the record must survive a power cut (a kept
    /// container) or not (a `--rm` container, a build step). Returns the
    /// layer directories, bottom first.
    pub fn ensure_and_register(
        &self,
        store: &Store,
        layers: &[(&Descriptor, &Digest)],
        dir: &Path,
        flush: Flush,
    ) -> Result<Vec<PathBuf>> {
        let _lock = self.lock()?;
        let dirs = self.unpack_missing(store, layers)?;
        // A prune drops a record whose directory does not exist (its owner
        // died before making it): make the directory before the record.
        fs::create_dir_all(dir).context("creating", dir)?;
        let diff_ids: Vec<&Digest> = layers.iter().map(|(_, diff_id)| *diff_id).collect();
        self.register_user(dir, &diff_ids, flush)?;
        Ok(dirs)
    }

    /// Writes the record of one user; the caller holds the lock.
    fn register_user(&self, dir: &Path, layers: &[&Digest], flush: Flush) -> Result<()> {
        let users = self.users_dir();
        fs::create_dir_all(&users).context("creating", &users)?;
        let record = serde_json::json!({ "dir": dir, "layers": layers });
        durable::write_flushing(&self.user_record(dir), record.to_string().as_bytes(), flush)
    }

    /// Forgets a user recorded by [`LayerStore::ensure_and_register`].
    pub fn unregister_user(&self, dir: &Path) -> Result<()> {
        crate::unpack::remove_any(&self.user_record(dir))
    }

    /// Every layer some existing user still needs. Records whose directory
    /// is gone (its owner was killed before cleaning up) are dropped.
    pub fn layers_in_use(&self) -> Result<std::collections::BTreeSet<Digest>> {
        let mut used = std::collections::BTreeSet::new();
        for entry in fs::read_dir(self.users_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let record: serde_json::Value =
                match fs::read(entry.path()).map(|b| serde_json::from_slice(&b)) {
                    Ok(Ok(record)) => record,
                    _ => continue,
                };
            let dir_exists = record["dir"]
                .as_str()
                .is_some_and(|d| Path::new(d).is_dir());
            if !dir_exists {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let layers = record["layers"].as_array().cloned().unwrap_or_default();
            used.extend(
                layers
                    .iter()
                    .filter_map(|l| l.as_str())
                    .filter_map(|l| Digest::parse(l).ok()),
            );
        }
        Ok(used)
    }
    // ANCHOR_END: users

    fn user_record(&self, dir: &Path) -> PathBuf {
        let name = Digest::of(dir.as_os_str().as_encoded_bytes());
        self.users_dir().join(format!("{}.json", name.hex()))
    }

    /// `ROOT/layer-users/`: one record per root filesystem using layers.
    fn users_dir(&self) -> PathBuf {
        self.dir.with_file_name("layer-users")
    }

    /// Serializes unpacking and pruning between engine processes.
    pub fn lock(&self) -> Result<durable::Lock> {
        durable::lock(&self.dir.join("unpack.lock"))
    }

    /// Removes a layer directory (and its short link).
    pub fn remove_layer(&self, diff_id: &Digest) -> Result<()> {
        let _ = fs::remove_file(self.dir.join(self.short_name(diff_id)));
        crate::unpack::remove_any(&self.layer_dir(diff_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The race this closes: a prune (which holds the lock) must find a
    /// new root filesystem's layers together with its record, or neither.
    #[test]
    fn unpacking_and_registering_are_one_critical_section() {
        let base = std::env::temp_dir().join(format!("crabbox-layers-{}", std::process::id()));
        let root = base.join("root");
        let store = Store::open(&root).unwrap();
        // One layer, stored as chapter 5 will store a layer it made.
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_uid(nix::unistd::geteuid().as_raw().into());
        header.set_gid(nix::unistd::getegid().as_raw().into());
        header.set_cksum();
        tar.append_data(&mut header, "hi", &b"hi\n"[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        fs::write(base.join("layer.tar"), &tar).unwrap();
        let diff_id = Digest::of(&tar);
        let blob = store
            .import_layer(&base.join("layer.tar"), &diff_id)
            .unwrap();

        let layer_store = LayerStore::open(&root).unwrap();
        let user = base.join("user");
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Hold the lock as a prune would.
            let prune = layer_store.lock().unwrap();
            let worker = scope.spawn(|| {
                let dirs = LayerStore::open(&root)
                    .unwrap()
                    .ensure_and_register(&store, &[(&blob, &diff_id)], &user, Flush::Later)
                    .unwrap();
                done.store(true, Ordering::SeqCst);
                dirs
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!done.load(Ordering::SeqCst), "it did not wait for the lock");
            assert!(!layer_store.layer_dir(&diff_id).exists());
            assert!(layer_store.layers_in_use().unwrap().is_empty());
            drop(prune);
            let dirs = worker.join().unwrap();
            assert_eq!(dirs, vec![layer_store.layer_dir(&diff_id)]);
        });
        assert_eq!(
            fs::read(layer_store.layer_dir(&diff_id).join("hi")).unwrap(),
            b"hi\n"
        );
        // Registered, with its directory made first: a prune keeps the layer.
        assert!(user.is_dir());
        assert!(layer_store.layers_in_use().unwrap().contains(&diff_id));
        layer_store.unregister_user(&user).unwrap();
        assert!(layer_store.layers_in_use().unwrap().is_empty());
        let _ = fs::remove_dir_all(&base);
    }
}
