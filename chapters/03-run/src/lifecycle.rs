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
//! ```
//!
//! `docker run` is `create` + `start` + `wait` (the notes' point: a
//! container runs as soon as it is created, and one that is not a service
//! runs its command and finishes). Without `--rm` the stopped container
//! stays, writable layer included, until it is removed.

use crate::process::{self, Hooks};
use crate::spec::{self, ContainerSpec, Mount, Overrides, Process};
use ch01_images::durable::{self, write_atomically};
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
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 32 random bytes as 64 hex digits, like docker's container IDs.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading", Path::new("/dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

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
        write_atomically(&dir.join(name), content.as_bytes())?;
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
    let containers = containers_dir(root);
    fs::create_dir_all(&containers).context("creating", &containers)?;
    let id = new_id()?;
    let name = options.name.clone().unwrap_or_else(|| id[..12].to_string());
    if !valid_name(&name) {
        return Err(Error::new(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let dir = containers.join(&id);
    let config = Config {
        id: id.clone(),
        name: name.clone(),
        image: image_name.to_string(),
        image_id: image.id().to_string(),
        created: now(),
        spec: build_spec(image, options, &id, &dir)?,
    };
    {
        // Names are unique: check and claim (by writing config.json) under
        // one lock, so two `run --name x` at once cannot both win.
        let _lock = durable::lock(&containers.join(".lock"))?;
        if list(root).iter().any(|c| c.name == name) {
            return Err(Error::new(format!(
                "the container name {name:?} is already in use — remove that container or choose another name"
            )));
        }
        fs::create_dir(&dir).context("creating", &dir)?;
        write_config(&dir, &config)?;
    }
    explain::step(
        &format!(
            "create container {} ({name}) in {}",
            &id[..12],
            dir.display()
        ),
        Some(&format!("mkdir {}", dir.display())),
    );
    let result = (|| {
        let rootfs = Rootfs::prepare(root, store, image, &dir, &config.spec.rootfs)?;
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
        Ok(rootfs) => Ok(Container {
            dir,
            config,
            rootfs,
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}
// ANCHOR_END: create

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
        },
        hostname,
        namespaces: spec::NAMESPACES.iter().map(|s| s.to_string()).collect(),
        mounts,
    })
}

fn write_config(dir: &Path, config: &Config) -> Result<()> {
    write_atomically(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(config).expect("serializes"),
    )
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).context("reading", path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(format!("{} is damaged: {e}", path.display())))
}

/// Rewrites `state.json` atomically.
pub fn set_state(dir: &Path, state: &State) -> Result<()> {
    write_atomically(
        &dir.join("state.json"),
        &serde_json::to_vec_pretty(state).expect("serializes"),
    )
}

pub fn read_state(dir: &Path) -> Result<State> {
    read_json(&dir.join("state.json"))
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
            let running = State {
                status: "running".into(),
                pid: Some(pid.as_raw()),
                started: Some(now()),
                ..State::default()
            };
            set_state(&container.dir, &running)?;
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
    let started = read_state(&container.dir)?.started;
    let code = process::wait(pid)?;
    let stopped = hooks.after_stop();
    // The container's own mounts died with its mount namespace; the
    // overlay was mounted from here, so it is unmounted from here.
    container.rootfs.unmount()?;
    let exited = State {
        status: "exited".into(),
        exit_code: Some(code),
        started,
        finished: Some(now()),
        pid: None,
    };
    set_state(&container.dir, &exited)?;
    stopped?;
    Ok(code)
}
// ANCHOR_END: start

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
}
