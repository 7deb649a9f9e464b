//! Removal: `rm`, `prune`, and `run --rm`'s [`delete`]. A container
//! removed is its directory gone, its writable layer with it, its mounts,
//! cgroup and layer-user record too, and what a later chapter's extension
//! made for it (its `on_remove`). The image's layers stay: other
//! containers and the image share them (and `rmi` refuses an image a
//! container uses).

use crate::extension::{Extension, Removing};
use crate::find::{self, Found};
use crate::lifecycle::Container;
use crate::record::{self, containers_dir};
use crate::state::{alive, effective_state};
use crate::stop;
use ch01_images::durable;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use ch01_images::reference::Reference;
use ch01_images::store::Store;
use ch01_images::table::human_size;
use nix::sys::signal::Signal;
use std::path::Path;

/// `rm [-f]`: a running container only with `-f`, which kills it first;
/// then everything of it goes, even when its monitor was killed
/// (`extension`'s part too: its `on_remove`, from the config on disk).
pub fn remove<E: Extension>(
    root: &Path,
    name: &str,
    force: bool,
    extension: &E,
    args: &E::RmArgs,
) -> Result<()> {
    let found = find::find(root, name)?;
    let state = effective_state(&found.dir);
    if state.is_running() {
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
        remove_from_disk(root, &found, extension, args)?;
    }
    Ok(())
}

/// `prune`: removes every container that is not running (with
/// `extension`'s `on_remove`, with the default `rm` flags).
pub fn prune<E: Extension>(root: &Path, extension: &E) -> Result<i32> {
    let mut deleted = remove_half_created(root)?;
    let mut reclaimed = 0;
    for config in find::list(root) {
        let dir = containers_dir(root).join(&config.id);
        let state = effective_state(&dir);
        // A live monitor is still finishing (or removing) this one; a
        // `run` or `create` is still making that one.
        if state.is_running()
            || alive(state.monitor_pid, state.monitor_start)
            || record::being_created(&dir)
        {
            continue;
        }
        reclaimed += dir_size(&dir.join("upper"));
        let id = config.id.clone();
        let found = Found { dir, config };
        remove_from_disk(root, &found, extension, &E::RmArgs::default())?;
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
    let containers = containers_dir(root);
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
        let has_config = record::read_config(&dir).is_some();
        if !is_container_dir || has_config {
            continue;
        }
        remove_dir(root, &dir)?;
        removed.push(id);
    }
    Ok(removed)
}

// ANCHOR: delete
/// Deletes a stopped container (`--rm`): what the extension made (its
/// `on_remove`), then unmounts its root filesystem if still mounted,
/// removes its writable layer and its directory. The image's layers
/// stay, shared.
pub fn delete<E: Extension>(container: Container, extension: &E) -> Result<()> {
    explain::step(
        &format!("remove container {}", &container.config.id[..12]),
        Some(&format!("rm -rf {}", container.dir.display())),
    );
    let dir = container.dir.clone();
    // `ROOT/containers/<id>`.
    let root = dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    let removing = Removing {
        root,
        dir: &dir,
        config: &container.config,
    };
    extension.on_remove(&E::RmArgs::default(), &removing)?;
    if let Some(resources) = &container.config.spec.resources {
        crate::cgroups::remove(resources)?;
    }
    container.rootfs.remove()?;
    ch02_layers::unpack::remove_any(&dir)
}
// ANCHOR_END: delete

/// Removes a container from what is on disk alone (no `Rootfs` in
/// memory: its image may even be gone): what the extension made (its
/// `on_remove`, from the config), unmount its root filesystem if still
/// mounted, its cgroup, its layer-user record, its directory. The caller
/// has made sure nothing of it runs any more. If `on_remove` fails, the
/// container stays, for another `rm` once the cause is fixed.
pub fn remove_from_disk<E: Extension>(
    root: &Path,
    found: &Found,
    extension: &E,
    args: &E::RmArgs,
) -> Result<()> {
    explain::step(
        &format!("remove container {}", &found.config.id[..12]),
        Some(&format!("rm -rf {}", found.dir.display())),
    );
    let removing = Removing {
        root,
        dir: &found.dir,
        config: &found.config,
    };
    extension.on_remove(args, &removing)?;
    if let Some(resources) = &found.config.spec.resources {
        crate::cgroups::remove(resources)?;
    }
    remove_dir(root, &found.dir)
}

/// Removes a container's directory and what points into it: its root
/// filesystem's mount, if still there, and its layer-user record. (Its
/// cgroup, named in its config, is the caller's.)
pub fn remove_dir(root: &Path, dir: &Path) -> Result<()> {
    let merged = dir.join("merged");
    if ch02_layers::overlay::is_mounted(&merged) {
        ch02_layers::overlay::unmount(&merged)?;
    }
    ch02_layers::layer_store::LayerStore::open(root)?.unregister_user(dir)?;
    ch02_layers::unpack::remove_any(dir)
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
    let containers = find::list(root);
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
