//! The build cache: a step already made is not made again.
//!
//! Every step has a **key**, a digest of everything its result depends on:
//!
//! ```text
//! key(step) = sha256( key(previous step)          ← the whole past, in one digest
//!                   + the instruction, variables substituted
//!                   + the ARG values in scope      (RUN sees them)
//!                   + for COPY/ADD: a checksum of every source file
//!                     (path, content, mode, owner, link target; not mtime) )
//! key(FROM) = the base image's ID (the digest of its config)
//! ```
//!
//! Since each key contains the one before it, the first step that changes
//! changes every key after it: one miss rebuilds the rest of the stage.
//! That is why a Dockerfile copies `requirements.txt` and installs packages
//! *before* it copies the application's code: editing the code leaves the
//! slow install step's key unchanged.
//!
//! A hit is a file `ROOT/build-cache/steps/<key>.json` naming the layer the
//! step made (or none). The cache keeps what it names: the blobs are pinned
//! in the image store (chapter 1's `Store::pin_blobs`), the unpacked layers
//! are registered as used by `ROOT/build-cache/layers` (chapter 2's layer
//! users), so removing an image does not remove what a rebuild would
//! reuse. `builder prune` forgets the cache, then removes what no image
//! uses any more.

use ch01_images::cli::GlobalArgs;
use ch01_images::digest::Digest;
use ch01_images::durable::{self, Flush};
use ch01_images::error::{IoContext, Result};
use ch01_images::manifest::Descriptor;
use ch01_images::store::Store;
use ch02_layers::layer_store::LayerStore;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The layer a step made: its blob in the store, its diff ID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// What the cache remembers of one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedStep {
    /// The layer the step made; `None` when it changed no file.
    pub layer: Option<Layer>,
    /// When it was first made (the history entry keeps this date).
    pub created: String,
}

/// `ROOT/build-cache/`.
pub struct Cache {
    dir: PathBuf,
}

// ANCHOR: key
/// The key of a step: the previous key, then every part, each on its own
/// line so that no two different lists of parts give the same text.
pub fn key(previous: &Digest, parts: &[&str]) -> Digest {
    let mut text = previous.to_string();
    for part in parts {
        text.push('\n');
        text.push_str(&part.len().to_string());
        text.push(':');
        text.push_str(part);
    }
    Digest::of(text.as_bytes())
}
// ANCHOR_END: key

impl Cache {
    pub fn open(root: &Path) -> Cache {
        Cache {
            dir: root.join("build-cache"),
        }
    }

    fn entry(&self, key: &Digest) -> PathBuf {
        self.dir.join("steps").join(format!("{}.json", key.hex()))
    }

    /// The directory that pins the cache's layers (a layer user).
    fn pin_dir(&self) -> PathBuf {
        self.dir.join("layers")
    }

    // ANCHOR: lookup
    /// The step stored under `key`, if its layer is still whole: its blob
    /// in the store (an `rmi` may have collected it) and its directory.
    pub fn lookup(&self, store: &Store, layers: &LayerStore, key: &Digest) -> Option<CachedStep> {
        let bytes = fs::read(self.entry(key)).ok()?;
        let step: CachedStep = serde_json::from_slice(&bytes).ok()?;
        if let Some(layer) = &step.layer {
            let whole = store.has_blob(&layer.descriptor.digest)
                && layers.layer_dir(&layer.diff_id).is_dir();
            if !whole {
                return None;
            }
        }
        Some(step)
    }
    // ANCHOR_END: lookup

    /// Remembers a step (a cache that cannot be written only costs time
    /// in the next build: the error is not the build's).
    pub fn save(&self, key: &Digest, step: &CachedStep) {
        let path = self.entry(key);
        let written = path
            .parent()
            .map(|d| fs::create_dir_all(d).context("creating", d))
            .unwrap_or(Ok(()))
            .and_then(|()| {
                let bytes = serde_json::to_vec(step).expect("a cache entry serializes");
                durable::write_flushing(&path, &bytes, Flush::Later)
            });
        if let Err(e) = written {
            eprintln!("warning: the build cache could not keep a step: {e}");
        }
    }

    /// Keeps every layer the cache names: its blob from garbage
    /// collection, its directory from layer pruning (after an `rmi`).
    pub fn pin(&self, store: &Store, layers: &LayerStore) -> Result<()> {
        let mut pinned: Vec<Layer> = Vec::new();
        for entry in fs::read_dir(self.dir.join("steps"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(bytes) = fs::read(entry.path()) else {
                continue;
            };
            let Ok(step) = serde_json::from_slice::<CachedStep>(&bytes) else {
                continue;
            };
            if let Some(layer) = step.layer {
                if store.has_blob(&layer.descriptor.digest) && !pinned.contains(&layer) {
                    pinned.push(layer);
                }
            }
        }
        let blobs: Vec<Digest> = pinned.iter().map(|l| l.descriptor.digest.clone()).collect();
        store.pin_blobs("build-cache", &blobs)?;
        let list: Vec<(&Descriptor, &Digest)> =
            pinned.iter().map(|l| (&l.descriptor, &l.diff_id)).collect();
        layers.ensure_and_register(store, &list, &self.pin_dir(), Flush::Later)?;
        Ok(())
    }

    /// Forgets every step; returns how many there were.
    pub fn clear(&self, store: &Store) -> Result<usize> {
        let count = fs::read_dir(self.dir.join("steps"))
            .map(|d| d.count())
            .unwrap_or(0);
        store.pin_blobs("build-cache", &[])?;
        ch02_layers::unpack::remove_any(&self.dir)?;
        Ok(count)
    }
}

// ANCHOR: prune
/// `builder prune`: forgets the cache and removes what killed builds left
/// behind, then the blobs and layers no image uses any more.
pub fn prune_command(globals: &GlobalArgs) -> Result<i32> {
    let store = globals.store()?;
    let leftovers = crate::step::remove_leftovers(&globals.root)?;
    let steps = Cache::open(&globals.root).clear(&store)?;
    let blobs = store.garbage_collect()?;
    let layers = ch02_layers::cli::prune_layers(&globals.root, &store)?;
    println!(
        "Deleted build cache: {steps} steps, {} blobs, {} layers{}",
        blobs.len(),
        layers.len(),
        match leftovers {
            0 => String::new(),
            n => format!(", and what {n} interrupted builds left"),
        }
    );
    Ok(0)
}
// ANCHOR_END: prune
