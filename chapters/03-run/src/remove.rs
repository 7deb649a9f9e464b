//! `rm` and `prune`: a container removed is its directory gone, its
//! writable layer with it, its mounts, cgroup and layer-user record too.
//! The image's layers stay: other containers and the image share them.

use crate::lifecycle::{self, Found};
use crate::stop;
use ch01_images::durable;
use ch01_images::error::{Error, Result};
use ch01_images::reference::Reference;
use ch01_images::store::Store;
use ch01_images::table::human_size;
use nix::sys::signal::Signal;
use std::path::Path;

/// `rm [-f]`: a running container only with `-f`, which kills it first;
/// then everything of it goes, even when its monitor was killed.
pub fn remove(root: &Path, name: &str, force: bool) -> Result<()> {
    let found = lifecycle::find(root, name)?;
    let state = lifecycle::effective_state(&found.dir);
    if state.status == "running" {
        if !force {
            return Err(Error::new(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                found.config.name
            ))
            .with_exit_code(1));
        }
        // Killing PID 1 kills every process of its PID namespace.
        stop::signal_pid1(&found, &state, Signal::SIGKILL)?;
        stop::wait_gone(
            state.pid,
            state.pid_start,
            std::time::Duration::from_secs(10),
        );
    }
    stop::wait_for_monitor(&found);
    if found.dir.exists() {
        lifecycle::remove_from_disk(root, &found)?;
    }
    Ok(())
}

/// `prune`: removes every container that is not running.
pub fn prune(root: &Path) -> Result<i32> {
    let mut deleted = remove_half_created(root)?;
    let mut reclaimed = 0;
    for config in lifecycle::list(root) {
        let dir = lifecycle::containers_dir(root).join(&config.id);
        let state = lifecycle::effective_state(&dir);
        // A live monitor is still finishing (or removing) this one; a
        // `run` or `create` is still making that one.
        if state.status == "running"
            || lifecycle::alive(state.monitor_pid, state.monitor_start)
            || lifecycle::being_created(&dir)
        {
            continue;
        }
        reclaimed += dir_size(&dir.join("upper"));
        let id = config.id.clone();
        lifecycle::remove_from_disk(root, &Found { dir, config })?;
        deleted.push(id);
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// Removes the directories of containers that never got a readable
/// `config.json`: the engine was killed (or the power cut, for a `--rm`
/// container whose files are not flushed) between the `mkdir` and the
/// config's rename. Nothing can name such a container, so only `prune`
/// finds it. Done under the lock that `create` holds from its `mkdir` to
/// its config, so a container being created right now is never taken for one.
fn remove_half_created(root: &Path) -> Result<Vec<String>> {
    let containers = lifecycle::containers_dir(root);
    if !containers.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = durable::lock(&containers.join(".lock"))?;
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(&containers)
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let is_container_dir =
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) && dir.is_dir();
        let has_config = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<lifecycle::Config>(&bytes).ok())
            .is_some();
        if !is_container_dir || has_config {
            continue;
        }
        lifecycle::remove_dir(root, &dir)?;
        removed.push(id);
    }
    Ok(removed)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

// ANCHOR: rmi_in_use
/// `rmi` without `-f`: an image a container was created from (running or
/// not) is not deleted, as with docker. Removing one of several names of
/// it is fine: the image itself stays. (With `-f` the names go; the
/// container keeps running on its layers, which stay registered to it.)
pub fn refuse_rmi_of_used_images(root: &Path, store: &Store, names: &[String]) -> Result<()> {
    let containers = lifecycle::list(root);
    for name in names {
        let Ok(image) = store.get(name) else {
            continue; // rmi itself says "No such image"
        };
        let names_of_image = store
            .images()?
            .into_iter()
            .filter(|i| i.id() == image.id())
            .count();
        let named_exactly = Reference::parse(name).is_ok_and(|r| r.store_name() == image.name);
        if named_exactly && names_of_image > 1 {
            continue;
        }
        if let Some(user) = containers
            .iter()
            .find(|c| c.image_id == image.id().to_string())
        {
            return Err(Error::new(format!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                &user.id[..12],
                image.id().short()
            ))
            .with_exit_code(1));
        }
    }
    Ok(())
}
// ANCHOR_END: rmi_in_use
