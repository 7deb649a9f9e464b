//! # Chapter 02: layers
//!
//! An image is a stack of layers; a container sees one tree. This crate
//! shows how the one becomes the other, and why ten containers of an image
//! cost one copy of its files. Read the modules in this order:
//!
//! 1. [`whiteout`]: how a layer says "deleted", in OCI and in overlayfs;
//! 2. [`contain`]: keeping every write of a hostile tar inside its directory;
//! 3. [`unpack`]: applying one layer, for overlayfs or flat;
//!    [`pipeline`]: its gunzip in a second thread, on a second core;
//! 4. [`layer_store`]: each layer unpacked once, verified, shared;
//! 5. [`overlay`] and [`rootfs`]: the overlay mount, and the `Rootfs`
//!    extension point chapters 3 and 5 use (`Rootfs::prepare` over an
//!    image, `Rootfs::prepare_layers` over any list of layers, such as a
//!    build step's parent; `Rootfs::with_overlay_options` for a writable
//!    layer that will become an image layer);
//! 6. [`diff`]: an upper directory turned back into a layer (device
//!    nodes and FIFOs included), and [`layer_store::LayerStore::adopt`],
//!    which makes that upper directory the layer's directory by renaming
//!    it (chapter 5's build steps);
//! 7. [`changes`]: what each layer adds, changes and deletes.

pub mod changes;
pub mod cli;
pub mod contain;
pub mod diff;
pub mod layer_store;
pub mod overlay;
pub mod pipeline;
pub mod rootfs;
pub mod unpack;
pub mod whiteout;
