//! # Chapter 01: images
//!
//! What is a container image, really? This crate answers by pulling one from
//! a real registry, the way `docker pull` does, and storing it in a
//! directory that any OCI tool can read. Read the modules in this order:
//!
//! 1. [`reference`](mod@reference): what a name like `busybox` or `localhost:5000/app:v1` means;
//! 2. [`digest`]: content addressing, the sha256 that names and checks every blob;
//! 3. [`manifest`] and [`platform`]: the JSON documents that describe an image;
//! 4. [`auth`] and [`registry`]: the HTTP API v2 and its auth challenges;
//! 5. [`store`] and [`durable`]: the OCI image layout on disk, written crash-safely,
//!    under an [`engine_root`] that only root may enter;
//! 6. [`pull`]: all of it together; [`archive`]: `save` and `load`.
//!
//! [`cli`] is the command line, which later chapters extend;
//! [`explain`] narrates each step; [`progress`] and [`table`] print.
//!
//! The seams later chapters build on, besides the command line:
//!
//! - committing an image: [`store::Store::import_layer`] stores a layer
//!   file checked against its diff ID, [`store::Store::commit_image`]
//!   stores a config, assembles the manifest and names the image, and
//!   [`store::Store::commit_manifest`] names a manifest already assembled
//!   (the one way an image gets a name: `pull`, `load`, chapter 5's `build`);
//! - [`cli::image_or_pull`]: the image from the store, or pulled first;
//! - [`error::ErrorKind`]: the failures a caller tells apart without
//!   reading the message (a transfer that broke off is retried);
//! - [`store::Store::pin_blobs`]: blobs that no name reaches, kept from
//!   garbage collection for another owner (chapter 5's build cache);
//! - [`manifest::RunConfig`]'s `other`: the config fields this engine does
//!   not act on (`Healthcheck`, `OnBuild`, `Shell`) kept as they are;
//! - [`registry::Registry::request`] and [`registry::Access`]: any method,
//!   with headers and a body, and push access (chapter 5's `push`).

pub mod archive;
pub mod auth;
pub mod cli;
pub mod digest;
pub mod durable;
pub mod engine_root;
pub mod error;
pub mod explain;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;
pub mod table;

pub use error::{Error, ErrorKind, Result};
