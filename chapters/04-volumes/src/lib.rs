//! # Chapter 04: volumes
//!
//! The notes say "containers do not persist data". Made exact: a
//! container keeps its writable layer (chapter 2's upper directory) until
//! it is **removed**, and everything written there goes with `rm`. A
//! **volume** is a directory of the host mounted into the container: it
//! outlives every container that uses it. This crate adds volumes to
//! chapter 3's engine without changing it, through chapter 3's
//! `Extension` seam. Read the modules in this order:
//!
//! 1. [`mountspec`]: what the command line asks for: `-v SRC:DST[:OPTS]`,
//!    `--mount type=…`, `--tmpfs`, with docker's rules and messages;
//! 2. [`volume`]: a volume on disk, `ROOT/volumes/<name>/_data` and its
//!    `volume.json`, made once under a lock;
//! 3. [`seed`]: docker's copy-up of the image's content into a new,
//!    empty volume, without ever following a symlink, and where it runs;
//! 4. [`extension`]: [`extension::Volumes`], chapter 3's `Extension`:
//!    the flags, the mounts appended to the spec, seeding in the
//!    `after_create` hook, anonymous volumes removed by `rm -v` and
//!    `--rm`, `inspect`'s `Mounts`;
//! 5. [`cli`]: every command so far plus `volume create|ls|inspect|rm|prune`.
//!
//! The mounts themselves are made by chapter 3's `mounts::apply`, inside
//! the container's mount namespace, destination resolved inside the root
//! filesystem: a symlink in the image can never send a volume onto the host.

pub mod cli;
pub mod extension;
pub mod mountspec;
pub mod seed;
pub mod volume;
