//! A container, kept on disk: a directory, `ROOT/containers/<64-hex id>/`:
//!
//! ```text
//! config.json   what was asked for: the image and the ContainerSpec (never changes)
//! state.json    what is happening: status, PID, exit code (rewritten atomically)
//! upper/ work/  the container's writable layer (chapter 2's Rootfs)
//! merged/       where its root filesystem is mounted while it runs
//! hostname hosts resolv.conf   bind-mounted onto the container's /etc files
//! lock          held while state.json is read, changed and rewritten
//! <id>-json.log the output of a detached container (see `monitor`)
//! ```
//!
//! This module reads and writes those files: [`Config`] (`config.json`),
//! the [`State`] of `state` (`state.json`) under the container's [`lock`],
//! and tells a container being created from one whose creation was
//! interrupted.

use crate::spec::ContainerSpec;
use crate::state::State;
use ch01_images::durable::{self, Flush};
use ch01_images::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `config.json`: the container as created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub name: String,
    /// The image as named on the command line, and its ID.
    pub image: String,
    pub image_id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// `--rm`: removed as soon as it exits (docker's HostConfig.AutoRemove).
    #[serde(default)]
    pub auto_remove: bool,
    /// The signal `stop` sends first: `--stop-signal`, else the image's
    /// STOPSIGNAL; `None` is SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    pub spec: ContainerSpec,
    /// What later chapters' extensions saved at creation, by extension
    /// name (see `extension`): all that `on_remove` will know.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl Config {
    /// What the extension `name` saved at creation, if anything.
    pub fn saved<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let value = self.extensions.get(name)?;
        serde_json::from_value(value.clone()).ok()
    }

    /// A container kept after it exits must survive a power cut; one
    /// removed when it exits (`--rm`) is runtime state only, like its
    /// state.json, and spares the disk flushes (about a millisecond each).
    pub fn flush(&self) -> Flush {
        if self.auto_remove {
            Flush::Later
        } else {
            Flush::ToDisk
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `ROOT/containers`.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// Writes `config.json` (atomically; flushed to disk as `flush` says).
pub fn write_config(dir: &Path, config: &Config, flush: Flush) -> Result<()> {
    durable::write_flushing(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(config).expect("serializes"),
        flush,
    )
}

/// Reads `config.json`, or `None` when it is missing or unreadable.
pub fn read_config(dir: &Path) -> Option<Config> {
    let bytes = fs::read(dir.join("config.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).context("reading", path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(format!("{} is damaged: {e}", path.display())))
}

/// Rewrites `state.json` atomically. Not flushed to disk: after a power
/// cut every process is gone anyway, and `state::effective_state` sees it.
pub fn set_state(dir: &Path, state: &State) -> Result<()> {
    durable::write_runtime_state(
        &dir.join("state.json"),
        &serde_json::to_vec_pretty(state).expect("serializes"),
    )
}

/// Reads `state.json` as written (see `state::effective_state` for the
/// state as it really is).
pub fn read_state(dir: &Path) -> Result<State> {
    read_json(&dir.join("state.json"))
}

/// The container's lock (`ROOT/containers/<id>/lock`): every
/// read-modify-write of `state.json` holds it, so the monitor recording an
/// exit and `stop` or `rm` never lose each other's changes.
pub fn lock(dir: &Path) -> Result<durable::Lock> {
    durable::lock(&dir.join("lock"))
}

/// Reads, changes and rewrites `state.json` atomically, under the lock.
pub fn update_state(dir: &Path, change: impl FnOnce(&mut State)) -> Result<State> {
    let _lock = lock(dir)?;
    let mut state = read_state(dir).unwrap_or_default();
    change(&mut state);
    set_state(dir, &state)?;
    Ok(state)
}

// ANCHOR: damaged
/// The files `create` makes besides `config.json`, without which a
/// container cannot start.
const MADE_BY_CREATE: [&str; 4] = ["state.json", "hostname", "hosts", "resolv.conf"];

/// The first file `create` makes that is missing from `dir`, if any.
pub fn missing_file(dir: &Path) -> Option<&'static str> {
    MADE_BY_CREATE
        .into_iter()
        .find(|file| !dir.join(file).exists())
}

/// Is this container being created right now? It has no `state.json`
/// yet and its creator holds its lock (see `create`). A creator that
/// was killed holds nothing: the kernel releases a dead process's locks.
pub fn being_created(dir: &Path) -> bool {
    let state = dir.join("state.json");
    if state.exists() {
        return false;
    }
    let Ok(file) = fs::OpenOptions::new().write(true).open(dir.join("lock")) else {
        return false;
    };
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err();
    held && !state.exists()
}
// ANCHOR_END: damaged
