//! The life of a container, kept on disk: create, start, wait, delete.
//!
//! ```text
//!   create ──▶ "created" ──start──▶ "running" ──exit──▶ "exited" ──delete──▶ (gone)
//! ```
//!
//! A container is a directory, `ROOT/containers/<64-hex id>/`:
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
//! A PID alone does not name a process for long (PIDs are reused), so
//! `state.json` keeps each PID with its start time, and [`alive`] checks
//! both: a container whose monitor was SIGKILLed is never "Up" forever.
//!
//! `docker run` is `create` + `start` + `wait` (the notes' point: a
//! container runs as soon as it is created, and one that is not a service
//! runs its command and finishes). Without `--rm` the stopped container
//! stays, writable layer included, until it is removed.

use crate::process::{self, Hooks};
use crate::spec::{self, ContainerSpec, Mount, Overrides, Process};
use ch01_images::durable::{self, Flush};
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use ch01_images::store::{Image, Store};
use ch02_layers::rootfs::Rootfs;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
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
}

/// `state.json`: where the container is in its life.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// `created`, `running` or `exited`.
    pub status: String,
    /// The host PID of the container's PID 1 while it runs.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// When `pid` started, in clock ticks after boot (`/proc/PID/stat`
    /// field 22): a PID can be reused, a PID *and* its start time cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The process that waits for PID 1 and records its exit, and its
    /// start time: the monitor of `run -d`, or the foreground `run` (or
    /// `start -a`) itself. Once it is gone, nobody else will record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_start: Option<u64>,
    /// The kernel's OOM killer killed a process of the container (over
    /// `--memory`): docker's State.OOMKilled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

/// One container: its directory, config and root filesystem.
pub struct Container {
    pub dir: PathBuf,
    pub config: Config,
    pub rootfs: Rootfs,
}

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
    /// `--memory`, `--pids-limit`, `--cpus` (see `cgroups`).
    pub resources: crate::cgroups::ResourceArgs,
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

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The longest host name the kernel takes (`sethostname(2)`).
const HOST_NAME_MAX: usize = 64;

// ANCHOR: hostname
/// docker's rule for `--hostname` (RFC 1123): dot-separated labels of
/// letters, digits and hyphens, none starting or ending with a hyphen, at
/// most 63 characters each. In all, DNS allows 253, but the kernel keeps
/// at most 64 (`HOST_NAME_MAX`: `sethostname` fails beyond), so that is
/// the limit here, checked before anything is made. The name is written
/// into the container's `/etc/hosts` and `/etc/hostname`: a newline there
/// would add a line of the caller's choosing.
pub fn check_hostname(hostname: &str) -> Result<()> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if hostname.len() <= HOST_NAME_MAX && hostname.split('.').all(label_ok) {
        return Ok(());
    }
    Err(Error::new(format!(
        "invalid hostname {hostname:?}: use letters, digits, hyphens and dots \
         (labels of at most 63 characters, not starting or ending with a hyphen; {HOST_NAME_MAX} in all)"
    )))
}
// ANCHOR_END: hostname

/// `ROOT/containers`.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// The configs of every container under `root` (unreadable ones skipped).
pub fn list(root: &Path) -> Vec<Config> {
    fs::read_dir(containers_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("config.json")).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}

/// The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`,
/// written into its directory (the spec bind-mounts them read-only over
/// the image's, see `build_spec`).
fn etc_files(dir: &Path, hostname: &str) -> Result<()> {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\
         127.0.1.1\t{hostname}\n"
    );
    let files = [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        (
            "resolv.conf",
            resolv_conf(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        ),
    ];
    for (name, content) in files {
        durable::write_runtime_state(&dir.join(name), content.as_bytes())?;
    }
    Ok(())
}

// ANCHOR: resolv_conf
/// The container's resolv.conf: the host's, unless it points at a resolver
/// on the host's loopback (systemd-resolved's 127.0.0.53): the container's
/// loopback is its own, and nobody answers there.
pub fn resolv_conf(host: &str) -> String {
    let local = host.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words
                .next()
                .is_some_and(|ip| ip.starts_with("127.") || ip == "::1")
    });
    if local || host.trim().is_empty() {
        "# the host's resolver is on its own loopback, unreachable from this container;\n\
         # until chapter 6 connects containers to a network, there is no DNS here\n"
            .to_string()
    } else {
        host.to_string()
    }
}
// ANCHOR_END: resolv_conf

// ANCHOR: create
/// Creates the container: its directory, config and state, its writable
/// layer over the image's (not mounted yet), and its /etc files.
pub fn create(
    root: &Path,
    store: &Store,
    image: &Image,
    image_name: &str,
    options: &CreateOptions,
) -> Result<Container> {
    if let Some(name) = options.name.as_deref().filter(|n| !valid_name(n)) {
        return Err(Error::new(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if let Some(hostname) = &options.hostname {
        check_hostname(hostname)?;
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
    };
    // A container kept after it exits must survive a power cut; one
    // removed when it exits (`--rm`) is runtime state only, like its
    // state.json, and spares the disk flushes (about a millisecond each).
    let flush = if options.auto_remove {
        Flush::Later
    } else {
        Flush::ToDisk
    };
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
        // killed halfway (unlocked, no state: "Dead", see [`effective_state`]).
        let claimed = lock(&dir).and_then(|lock| {
            write_config(&dir, &config, flush)?;
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
        etc_files(&dir, &config.spec.hostname)?;
        set_state(
            &dir,
            &State {
                status: "created".into(),
                ..State::default()
            },
        )?;
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
            // Nothing half-made: the directory and its layer-user record.
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

/// The spec from the image's config and the command line.
fn build_spec(
    image: &Image,
    options: &CreateOptions,
    id: &str,
    dir: &Path,
) -> Result<ContainerSpec> {
    let run_config = &image.config.config;
    let overrides = &options.overrides;
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut mounts = spec::default_mounts();
    for name in ["hostname", "hosts", "resolv.conf"] {
        mounts.push(Mount::bind_file(&dir.join(name), &format!("/etc/{name}")));
    }
    Ok(ContainerSpec {
        rootfs: dir.join("merged"),
        process: Process {
            args: spec::process_args(run_config, overrides)?,
            env: spec::process_env(run_config, overrides, &hostname),
            cwd: overrides
                .workdir
                .clone()
                .or_else(|| run_config.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: overrides
                .user
                .clone()
                .or_else(|| run_config.user.clone())
                .unwrap_or_default(),
            stdin: options.stdin,
            tty: options.tty,
            init: options.init,
            die_with_parent: !options.detach,
        },
        hostname,
        namespaces: spec::NAMESPACES.iter().map(|s| s.to_string()).collect(),
        mounts,
        resources: options.resources.resources(id)?,
        security: options.security.clone(),
    })
}

fn write_config(dir: &Path, config: &Config, flush: Flush) -> Result<()> {
    durable::write_flushing(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(config).expect("serializes"),
        flush,
    )
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).context("reading", path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(format!("{} is damaged: {e}", path.display())))
}

/// Rewrites `state.json` atomically. Not flushed to disk: after a power
/// cut every process is gone anyway, and [`effective_state`] sees it.
pub fn set_state(dir: &Path, state: &State) -> Result<()> {
    durable::write_runtime_state(
        &dir.join("state.json"),
        &serde_json::to_vec_pretty(state).expect("serializes"),
    )
}

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

/// When process `pid` started (ticks after boot), or `None` when there is
/// no such process or it is a zombie (dead, waiting to be reaped).
pub fn start_time(pid: i32) -> Option<u64> {
    let fields = process::stat_fields(&pid.to_string())?;
    // Field 3 is the state; field 22 the start time.
    if matches!(fields.first().map(String::as_str), Some("Z" | "X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Is `pid` alive and still the process that started at `start`?
pub fn alive(pid: Option<i32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(pid), Some(start)) => start_time(pid) == Some(start),
        (Some(pid), None) => start_time(pid).is_some(),
        _ => false,
    }
}

/// The state as it really is: a "running" container whose PID 1 is gone
/// without anyone recording it (its monitor was SIGKILLed, the machine
/// rebooted) is shown exited, with code 255 as docker does after a crash.
///
/// A container without its state or one of the files `create` makes
/// (its creator was killed halfway, or a file was deleted by hand) is
/// "dead", as docker calls a container it cannot use: `start` refuses
/// it, `rm` and `prune` remove it. One being created right now is
/// "created".
pub fn effective_state(dir: &Path) -> State {
    let mut state = match read_state(dir) {
        Ok(state) => state,
        Err(_) if being_created(dir) => {
            return State {
                status: "created".into(),
                ..State::default()
            }
        }
        // Its creation may have ended meanwhile; else it never will.
        Err(_) => read_state(dir).unwrap_or_default(),
    };
    if state.status.is_empty() || (state.status != "running" && missing_file(dir).is_some()) {
        state.status = "dead".into();
        return state;
    }
    if state.status == "running" && !alive(state.pid, state.pid_start) {
        // The monitor may be writing the real exit code right now.
        if alive(state.monitor_pid, state.monitor_start) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            state = read_state(dir).unwrap_or_default();
            if state.status != "running" {
                return state;
            }
        }
        state.status = "exited".into();
        state.exit_code = Some(255);
        state.pid = None;
    }
    state
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
/// yet and its creator holds its lock (see [`create`]). A creator that
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

/// A container found on disk: its directory and config.
pub struct Found {
    pub dir: PathBuf,
    pub config: Config,
}

/// Finds a container as docker does: full ID, then name, then a unique
/// ID prefix. Docker's message (exit code 1) when there is none.
pub fn find(root: &Path, wanted: &str) -> Result<Found> {
    let configs = list(root);
    let found = |config: &Config| Found {
        dir: containers_dir(root).join(&config.id),
        config: config.clone(),
    };
    if let Some(c) = configs.iter().find(|c| c.id == wanted).or_else(|| {
        configs
            .iter()
            .find(|c| c.name == wanted.trim_start_matches('/'))
    }) {
        return Ok(found(c));
    }
    let matches: Vec<&Config> = if wanted.is_empty() {
        vec![]
    } else {
        configs
            .iter()
            .filter(|c| c.id.starts_with(wanted))
            .collect()
    };
    match matches.as_slice() {
        [one] => Ok(found(one)),
        [] => Err(Error::new(format!("No such container: {wanted}")).with_exit_code(1)),
        _ => Err(Error::new(format!(
            "multiple containers found with the ID prefix {wanted:?} — give more digits"
        ))
        .with_exit_code(1)),
    }
}

/// Removes a container from what is on disk alone (no `Rootfs` in
/// memory: its image may even be gone): unmount its root filesystem if
/// still mounted, its cgroup, its layer-user record, its directory.
/// The caller has made sure nothing of it runs any more.
pub fn remove_from_disk(root: &Path, found: &Found) -> Result<()> {
    explain::step(
        &format!("remove container {}", &found.config.id[..12]),
        Some(&format!("rm -rf {}", found.dir.display())),
    );
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

// ANCHOR: start
/// Starts the container: mounts its root filesystem and spawns its PID 1
/// (running `hooks.after_create` at the gate). Returns once the command
/// runs, with its host PID; on failure the container is left "exited"
/// with docker's exit code (125, 126 or 127) and the error says why.
pub fn start(container: &Container, hooks: &mut dyn Hooks) -> Result<Pid> {
    container.rootfs.mount()?;
    match process::spawn(&container.config.spec, hooks) {
        Ok(pid) => {
            // We wait for it: a foreground `run`, or a monitor.
            let waiter = std::process::id() as i32;
            let running = State {
                status: "running".into(),
                pid: Some(pid.as_raw()),
                pid_start: start_time(pid.as_raw()),
                started: Some(now()),
                monitor_pid: Some(waiter),
                monitor_start: start_time(waiter),
                ..State::default()
            };
            if let Err(e) = set_state(&container.dir, &running) {
                // Unrecorded, nothing could ever stop it: it must not run
                // (a full disk, say). Killing PID 1 ends its namespace.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                let _ = container.rootfs.unmount();
                return Err(Error::new(format!(
                    "the container started but could not be recorded as running, so it was killed: {e}"
                )));
            }
            Ok(pid)
        }
        Err(e) => {
            let _ = container.rootfs.unmount();
            let failed = State {
                status: "exited".into(),
                exit_code: Some(e.exit_code()),
                finished: Some(now()),
                ..State::default()
            };
            let _ = set_state(&container.dir, &failed);
            Err(e)
        }
    }
}

/// Waits for the running container's PID 1 (forwarding signals), runs
/// `hooks.after_stop`, unmounts the root filesystem and records the exit
/// code, docker's way.
pub fn wait(container: &Container, pid: Pid, hooks: &mut dyn Hooks) -> Result<i32> {
    let code = process::wait(pid)?;
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
    update_state(&container.dir, |state| {
        state.status = "exited".into();
        state.exit_code = Some(code);
        state.finished = Some(now());
        state.pid = None;
        state.pid_start = None;
        state.oom_killed = oom_killed;
    })
    .map_err(|e| {
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
    drop(lock(&found.dir)?);
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
    // As when it was created (see `create`).
    let flush = if config.auto_remove {
        Flush::Later
    } else {
        Flush::ToDisk
    };
    let rootfs = Rootfs::prepare(root, store, &image, &found.dir, &config.spec.rootfs, flush)?;
    Ok(Container {
        dir: found.dir.clone(),
        config,
        rootfs,
    })
}
// ANCHOR_END: reopen

// ANCHOR: delete
/// Deletes a stopped container: unmounts its root filesystem if still
/// mounted, removes its writable layer and its directory. The image's
/// layers stay, shared.
pub fn delete(container: Container) -> Result<()> {
    explain::step(
        &format!("remove container {}", &container.config.id[..12]),
        Some(&format!("rm -rf {}", container.dir.display())),
    );
    let dir = container.dir.clone();
    if let Some(resources) = &container.config.spec.resources {
        crate::cgroups::remove(resources)?;
    }
    container.rootfs.remove()?;
    ch02_layers::unpack::remove_any(&dir)
}
// ANCHOR_END: delete

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_skips_a_loopback_resolver() {
        assert!(resolv_conf("nameserver 127.0.0.53\noptions edns0\n").starts_with('#'));
        assert_eq!(
            resolv_conf("nameserver 10.0.0.2\n"),
            "nameserver 10.0.0.2\n"
        );
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        let long_label = "a".repeat(63);
        for good in ["web", "web-1", "a.b.c", "1abc", long_label.as_str()] {
            assert!(check_hostname(good).is_ok(), "{good}");
        }
        let too_long_label = "a".repeat(64);
        let too_long = format!("{}.a", ["abcd"; 13].join(".")); // 66; its first 64 are fine
        assert!(check_hostname(&too_long[..64]).is_ok());
        for bad in [
            "",
            "a\nb",
            "a b",
            "a_b",
            "-a",
            "a-",
            "a..b",
            "a.",
            too_long_label.as_str(),
            too_long.as_str(),
        ] {
            let e = check_hostname(bad).unwrap_err();
            assert!(!e.message().contains('\n'), "{bad:?}: {e}");
        }
    }
}
