//! The life of a container: start, wait, and start again.
//!
//! ```text
//!   create ──▶ Created ──start──▶ Running ──exit──▶ Exited ──rm──▶ (gone)
//!                                    ▲                 │
//!                                    └──────start──────┘
//! ```
//!
//! [`create`](crate::create) makes a container (its directory, config and
//! writable layer); [`start`] mounts its root filesystem and spawns its
//! PID 1; [`wait`] (or the monitor of `run -d`) waits for it and
//! [`finish`] records its exit; [`reopen`] gets a stopped one ready to
//! start again; [`remove`](crate::remove) deletes it. Each step records
//! where the container is in `state.json` (see `state` for the
//! transitions, `record` for the files).
//!
//! Without `--rm` the stopped container stays, writable layer included,
//! until it is removed.

use crate::find::Found;
use crate::hooks::Hooks;
use crate::process::{self, Spawned};
use crate::record::{self, missing_file, update_state};
use crate::state::State;
use ch01_images::error::{Error, Result};
use ch01_images::store::Store;
use ch02_layers::rootfs::Rootfs;
use std::path::{Path, PathBuf};

/// `config.json`, as read by every step (see `record`).
pub use crate::record::Config;

/// One container, ready to start or running: its directory, config and
/// root filesystem (made by `create` or [`reopen`]).
pub struct Container {
    pub dir: PathBuf,
    pub config: Config,
    pub rootfs: Rootfs,
}

// ANCHOR: start
/// Starts the container: mounts its root filesystem and spawns its PID 1
/// (running `hooks.after_create` at the gate). Returns once the command
/// runs, with its host PID (and `-t`'s terminal) for [`wait`]; on failure
/// the container is left "exited" with docker's exit code (125, 126 or
/// 127) and the error says why.
pub fn start(container: &Container, hooks: &mut dyn Hooks) -> Result<Spawned> {
    container.rootfs.mount()?;
    match process::spawn(&container.config.spec, hooks) {
        Ok(spawned) => {
            let pid = spawned.pid;
            // We wait for it: a foreground `run`, or a monitor.
            let waiter = std::process::id() as i32;
            let running = State::running(pid.as_raw(), waiter);
            if let Err(e) = record::set_state(&container.dir, &running) {
                // Unrecorded, nothing could ever stop it: it must not run
                // (a full disk, say). Killing PID 1 ends its namespace.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                let _ = container.rootfs.unmount();
                return Err(Error::new(format!(
                    "the container started but could not be recorded as running, so it was killed: {e}"
                )));
            }
            Ok(spawned)
        }
        Err(e) => {
            let _ = container.rootfs.unmount();
            let failed = State::failed_to_start(e.exit_code());
            let _ = record::set_state(&container.dir, &failed);
            Err(e)
        }
    }
}

/// Waits for the running container's PID 1 (forwarding signals), runs
/// `hooks.after_stop`, unmounts the root filesystem and records the exit
/// code, docker's way.
pub fn wait(container: &Container, spawned: Spawned, hooks: &mut dyn Hooks) -> Result<i32> {
    let code = process::wait(spawned)?;
    finish(container, code, hooks)
}

/// What follows the exit of PID 1 (reaped, with docker's exit `code`):
/// `hooks.after_stop`, unmount, and "exited" recorded under the lock.
/// The foreground `run` and the monitor of `run -d` both end here.
pub fn finish(container: &Container, code: i32, hooks: &mut dyn Hooks) -> Result<i32> {
    let stopped = hooks.after_stop();
    let oom_killed = container
        .config
        .spec
        .resources
        .as_ref()
        .is_some_and(crate::cgroups::oom_killed);
    // The container's own mounts died with its mount namespace; the
    // overlay was mounted from here, so it is unmounted from here.
    container.rootfs.unmount()?;
    update_state(&container.dir, |state| state.exited(code, oom_killed)).map_err(|e| {
        // The exit code is known here and nowhere else: say it.
        Error::new(format!(
            "the container exited with code {code}, but that could not be recorded: {e}"
        ))
    })?;
    stopped?;
    Ok(code)
}
// ANCHOR_END: start

// ANCHOR: reopen
/// A created or stopped container, ready to start: its writable layer is
/// still in its directory, so whatever it wrote there is still there
/// (the notes' "containers do not persist data" is only true of removed
/// ones). Its image must still be in the store: the layers under the
/// writable one come from it.
pub fn reopen(root: &Path, store: &Store, found: &Found) -> Result<Container> {
    let config = found.config.clone();
    // Waits for a creation in progress to end (its creator holds the lock).
    drop(record::lock(&found.dir)?);
    if let Some(file) = missing_file(&found.dir) {
        return Err(Error::new(format!(
            "container {} is damaged: its {file} is missing (its creation was interrupted, or the file was deleted) — remove it with rm and run a new one",
            config.name
        )));
    }
    let image = store.find(&config.image_id)?.ok_or_else(|| {
        Error::new(format!(
            "the image of container {} ({}) was removed with rmi -f: it cannot start again — remove it and run a new one",
            config.name, config.image
        ))
    })?;
    // Flushed to disk as when it was created (see `Config::flush`).
    let flush = config.flush();
    let rootfs = Rootfs::prepare(root, store, &image, &found.dir, &config.spec.rootfs, flush)?;
    Ok(Container {
        dir: found.dir.clone(),
        config,
        rootfs,
    })
}
// ANCHOR_END: reopen
