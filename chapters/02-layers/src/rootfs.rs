//! `Rootfs`: the extension point later chapters build on.
//!
//! A container's root filesystem is an overlay of its image's layers (shared,
//! read-only) under a writable layer of its own. Chapter 3 prepares one per
//! container; chapter 5 prepares one per `RUN` step of a build and turns its
//! upper directory into a new layer with [`crate::diff`]. The life of one:
//!
//! ```text
//! prepare  unpack the layers once (shared), register as their user,
//!          make upper/ and work/
//! mount    mount -t overlay … at the target
//! unmount  umount the target
//! remove   unmount if needed, delete upper/ and work/ (the layers stay)
//! ```

use crate::layer_store::{layers_with_diff_ids, LayerStore};
use crate::overlay::{self, OverlayMount};
use ch01_images::digest::Digest;
use ch01_images::durable::Flush;
use ch01_images::error::{IoContext, Result};
use ch01_images::manifest::Descriptor;
use ch01_images::store::{Image, Store};
use std::fs;
use std::path::{Path, PathBuf};

// ANCHOR: rootfs
/// The root filesystem of one container (or one build step).
#[derive(Clone, Debug)]
pub struct Rootfs {
    /// The container's own directory, holding `upper/` and `work/`.
    pub dir: PathBuf,
    /// Where the merged tree appears.
    pub target: PathBuf,
    /// The layer directories, bottom first (shared, read-only).
    pub layers: Vec<PathBuf>,
    overlay: OverlayMount,
}

impl Rootfs {
    /// Unpacks what is missing of the image's layers and creates the
    /// writable layer in `dir`. `flush`: whether it must survive a power
    /// cut (a kept container, a `mount`) or is thrown away after one run
    /// (`Flush::Later`: its record is not flushed and the overlay is
    /// mounted `volatile`).
    pub fn prepare(
        root: &Path,
        store: &Store,
        image: &Image,
        dir: &Path,
        target: &Path,
        flush: Flush,
    ) -> Result<Rootfs> {
        let layers = layers_with_diff_ids(image)?;
        Rootfs::prepare_layers(root, store, &layers, dir, target, flush)
    }

    /// Like [`Rootfs::prepare`], over any list of layers (each its blob and
    /// its diff ID, bottom first), not only a stored image's: a build
    /// step's parent is its base image's layers plus those earlier steps
    /// made, which no image names yet.
    pub fn prepare_layers(
        root: &Path,
        store: &Store,
        layers: &[(&Descriptor, &Digest)],
        dir: &Path,
        target: &Path,
        flush: Flush,
    ) -> Result<Rootfs> {
        let layer_store = LayerStore::open(root)?;
        // While this root filesystem exists, its layers are not pruned.
        let layer_dirs = layer_store.ensure_and_register(store, layers, dir, flush)?;
        let upper = dir.join("upper");
        let work = dir.join("work");
        for d in [&upper, &work, &target.to_path_buf()] {
            fs::create_dir_all(d).context("creating", d)?;
        }
        // The top layer comes first in lowerdir.
        let lowers = layers
            .iter()
            .rev()
            .map(|(_, diff_id)| layer_store.short_name(diff_id))
            .collect();
        let overlay = OverlayMount {
            base: layer_store.dir().to_path_buf(),
            lowers,
            upper,
            work,
            target: target.to_path_buf(),
            volatile: flush == Flush::Later,
            extra: Vec::new(),
        };
        Ok(Rootfs {
            dir: dir.to_path_buf(),
            target: target.to_path_buf(),
            layers: layer_dirs,
            overlay,
        })
    }

    /// Adds overlay mount options. A build step's writable layer becomes
    /// an image layer, read by any engine on any kernel, so chapter 5
    /// mounts with `redirect_dir=off` (a renamed directory is copied up
    /// whole instead of leaving a redirect only overlayfs understands),
    /// `metacopy=off` (a chmod copies the data up too) and `index=off`.
    pub fn with_overlay_options(mut self, options: &[&str]) -> Rootfs {
        self.overlay
            .extra
            .extend(options.iter().map(|o| o.to_string()));
        self
    }

    pub fn upper(&self) -> &Path {
        &self.overlay.upper
    }

    pub fn mount(&self) -> Result<()> {
        self.overlay.mount()
    }

    pub fn unmount(&self) -> Result<()> {
        overlay::unmount(&self.target)
    }

    /// Unmounts (if mounted) and deletes the writable layer. The shared
    /// layers stay for other containers and images.
    pub fn remove(self) -> Result<()> {
        if overlay::is_mounted(&self.target) {
            self.unmount()?;
        }
        for d in [&self.overlay.upper, &self.overlay.work] {
            crate::unpack::remove_any(d)?;
        }
        LayerStore::open_at(&self.overlay.base).unregister_user(&self.dir)
    }
}
// ANCHOR_END: rootfs
