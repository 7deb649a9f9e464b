//! `create`: a container made from an image, not started. Its
//! directory, `config.json` (with a name nobody else has) and `state.json`
//! ("created"), its writable layer over the image's (not mounted yet),
//! what a later chapter's extension adds, and its `/etc` files.
//!
//! `docker run` is `create` + `start` + `wait` (the notes' point: a
//! container runs as soon as it is created, and one that is not a service
//! runs its command and finishes); `docker create` is the first step alone.

use crate::cgroups::Limits;
use crate::etc::{self, ETC_FILES};
use crate::extension::{Creating, Extension, Removing};
use crate::find::list;
use crate::lifecycle::Container;
use crate::names::valid_name;
use crate::record::{self, containers_dir, now, Config};
use crate::remove::remove_dir;
use crate::spec::{ContainerSpec, Mount, Overrides, SpecBuilder};
use crate::state::State;
use ch01_images::durable::{self, Flush};
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use ch01_images::store::{Image, Store};
use ch02_layers::rootfs::Rootfs;
use std::fs;
use std::path::Path;

/// What `create` needs beyond the image.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub overrides: Overrides,
    /// `-i`: keep stdin attached.
    pub stdin: bool,
    /// `-t`: a pseudo-terminal for the container (see `pty`).
    pub tty: bool,
    /// `--init`: a tiny init as PID 1 (see `init`).
    pub init: bool,
    /// `--memory`, `--pids-limit`, `--cpus`, parsed (see `cgroups`).
    pub resources: Limits,
    /// `--privileged`, `--cap-add`, `--device`, `--security-opt` (see `security`).
    pub security: crate::security::Security,
    /// `--rm`: remove the container when it exits.
    pub auto_remove: bool,
    /// `-d`: a monitor keeps it, not the caller (see `spec::Process`).
    pub detach: bool,
    /// `--stop-signal`, `--stop-timeout` (see [`Config`]).
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
}

/// 32 random bytes as 64 hex digits, like docker's container IDs.
fn new_id() -> Result<String> {
    let bytes: [u8; 32] = random_bytes()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading", Path::new("/dev/urandom"))?;
    Ok(bytes)
}

/// A generated name no container has yet (see `names`); after a few
/// unlucky draws, the short ID, which is unique anyway.
fn unused_name(taken: &[String], id: &str) -> Result<String> {
    for _ in 0..10 {
        let name = crate::names::generate(random_bytes()?);
        if !taken.contains(&name) {
            return Ok(name);
        }
    }
    Ok(id[..12].to_string())
}

// ANCHOR: create
/// Creates the container: its directory, config and state, its writable
/// layer over the image's (not mounted yet), what `extension` adds (see
/// `extension`), and its /etc files.
pub fn create<E: Extension>(
    root: &Path,
    store: &Store,
    image: &Image,
    image_name: &str,
    options: &CreateOptions,
    extension: &E,
    args: &E::RunArgs,
) -> Result<Container> {
    if let Some(name) = options.name.as_deref().filter(|n| !valid_name(n)) {
        return Err(Error::new(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if let Some(hostname) = &options.hostname {
        etc::check_hostname(hostname)?;
    }
    let containers = containers_dir(root);
    fs::create_dir_all(&containers).context("creating", &containers)?;
    let id = new_id()?;
    let dir = containers.join(&id);
    let mut config = Config {
        id: id.clone(),
        name: String::new(), // chosen below, under the lock
        image: image_name.to_string(),
        image_id: image.id().to_string(),
        created: now(),
        auto_remove: options.auto_remove,
        stop_signal: options
            .stop_signal
            .clone()
            .or_else(|| image.config.config.stop_signal.clone()),
        stop_timeout: options.stop_timeout,
        spec: build_spec(image, options, &id, &dir)?,
        extensions: Default::default(),
    };
    // Flushed to disk unless `--rm` (see `Config::flush`).
    let flush = config.flush();
    let creating;
    {
        // Names are unique: check and claim (by writing config.json) under
        // one lock, so two `run --name x` at once cannot both win.
        let _lock = durable::lock(&containers.join(".lock"))?;
        let taken: Vec<String> = list(root).into_iter().map(|c| c.name).collect();
        config.name = match &options.name {
            Some(name) if taken.contains(name) => {
                return Err(Error::new(format!(
                    "the container name {name:?} is already in use — remove that container or choose another name"
                )))
            }
            Some(name) => name.clone(),
            None => unused_name(&taken, &id)?,
        };
        fs::create_dir(&dir).context("creating", &dir)?;
        // Held until state.json exists: `ps`, `start` and `prune` tell a
        // container being created (locked) from one whose creator was
        // killed halfway (unlocked, no state: "Dead", see `state::effective_state`).
        let claimed = record::lock(&dir).and_then(|lock| {
            record::write_config(&dir, &config, flush)?;
            Ok(lock)
        });
        match claimed {
            Ok(lock) => creating = lock,
            Err(e) => {
                // A full disk: no empty container directory left behind.
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
    }
    explain::step(
        &format!(
            "create container {} ({}) in {}",
            &id[..12],
            config.name,
            dir.display()
        ),
        Some(&format!("mkdir {}", dir.display())),
    );
    let result = (|| {
        let rootfs = prepare_rootfs(root, store, image, image_name, &dir, &config, flush)?;
        let mut etc_files = etc::default_etc_files(&config.spec.hostname);
        let before = config.spec.clone();
        extension.create(
            args,
            &mut Creating {
                root,
                store,
                image,
                dir: &dir,
                id: &id,
                name: &config.name,
                spec: &mut config.spec,
                etc: &mut etc_files,
                extensions: &mut config.extensions,
            },
        )?;
        let unchanged =
            serde_json::to_value(&before).ok() == serde_json::to_value(&config.spec).ok();
        if !unchanged || !config.extensions.is_empty() {
            record::write_config(&dir, &config, flush)?;
        }
        etc::write(&dir, &config.spec.hostname, &etc_files)?;
        record::set_state(&dir, &State::created())?;
        Ok(rootfs)
    })();
    match result {
        Ok(rootfs) => {
            drop(creating);
            Ok(Container {
                dir,
                config,
                rootfs,
            })
        }
        Err(e) => {
            // Nothing half-made: what the extension made, the directory
            // and its layer-user record.
            let removing = Removing {
                root,
                dir: &dir,
                config: &config,
            };
            let _ = extension.on_remove(&E::RmArgs::default(), &removing);
            if remove_dir(root, &dir).is_err() {
                let _ = fs::remove_dir_all(&dir);
            }
            Err(e)
        }
    }
}
// ANCHOR_END: create

/// The container's root filesystem over its image's layers. `rmi -f` of
/// the image may run at the same time: it deletes the image's blobs and
/// the unpacked layers nobody has registered yet. Once this container is
/// registered as their user (by `Rootfs::prepare`), the layers stay; if
/// they went before that, the image is either gone (said in one line) or
/// still there (pulled again meanwhile), and its layers are unpacked again.
fn prepare_rootfs(
    root: &Path,
    store: &Store,
    image: &Image,
    image_name: &str,
    dir: &Path,
    config: &Config,
    flush: Flush,
) -> Result<Rootfs> {
    let prepared = Rootfs::prepare(root, store, image, dir, &config.spec.rootfs, flush);
    if let Ok(rootfs) = &prepared {
        // Under the layer store's lock: a prune that started before our
        // registration has finished, and any later one sees it.
        let _lock = ch02_layers::layer_store::LayerStore::open(root)?.lock()?;
        if rootfs.layers.iter().all(|layer| layer.is_dir()) {
            return prepared;
        }
    }
    let still_there = store.find(&image.id().to_string()).ok().flatten().is_some();
    if !still_there {
        return Err(image_removed(image_name));
    }
    prepared?;
    Rootfs::prepare(root, store, image, dir, &config.spec.rootfs, flush)
}

/// The one line for an image removed (`rmi -f`) while a container of it
/// was being created or started.
pub fn image_removed(image_name: &str) -> Error {
    Error::new(format!(
        "the image {image_name} was removed (rmi -f) while this container was being created — pull it again, then run"
    ))
}

/// The spec from the image's config and the command line: chapter 3's
/// defaults (see `spec::SpecBuilder`), then the `/etc` binds.
fn build_spec(
    image: &Image,
    options: &CreateOptions,
    id: &str,
    dir: &Path,
) -> Result<ContainerSpec> {
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut spec = SpecBuilder::new(dir.join("merged"))
        .image(&image.config.config)
        .overrides(options.overrides.clone())
        .hostname(&hostname)
        .stdio(options.stdin, options.tty, options.init)
        .die_with_parent(!options.detach)
        .resources(Some(options.resources.in_cgroup(id)))
        .security(options.security.clone());
    for name in ETC_FILES {
        spec = spec.mount(Mount::bind_file(&dir.join(name), &format!("/etc/{name}")));
    }
    spec.build()
}
