//! `ContainerSpec`: everything the runtime needs to know to start one
//! container, written down before anything runs.
//!
//! A container is a process plus the world it sees. The spec is that world
//! as data, in the spirit of the OCI runtime spec's `config.json` (runc
//! reads one just like it): the root filesystem, the process (argv, env,
//! working directory, user), the hostname, which namespaces to create, and
//! the list of mounts. It is saved as `ROOT/containers/<id>/config.json`,
//! so `cat` shows a learner exactly what was asked for.
//!
//! **Extension point:** [`ContainerSpec::mounts`] is applied in order inside
//! the new mount namespace, before `pivot_root`. Chapter 3 fills it with
//! docker's default mounts (/proc, /dev, /sys, …) and the container's
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`; a volumes extension
//! appends to it (through an extension's `create`, see `extension`) and
//! nothing else changes. [`SpecBuilder`] makes a spec with chapter 3's
//! defaults, for a container or for a process with no container record.

use ch01_images::error::{Error, Result};
use ch01_images::manifest::RunConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The PATH a container gets when its image sets none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ANCHOR: spec
/// One container, as data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The merged overlay tree that becomes `/` (chapter 2's `Rootfs` target).
    pub rootfs: PathBuf,
    pub process: Process,
    pub hostname: String,
    /// The namespaces to create, e.g. `["mount", "uts", "ipc", "pid", "network"]`.
    pub namespaces: Vec<String>,
    /// Mounts made inside the new mount namespace, in order (see module doc).
    pub mounts: Vec<Mount>,
    /// The container's cgroup and its resource limits (`--memory`,
    /// `--pids-limit`, `--cpus`), made before the container starts (see
    /// `cgroups`); its device rules come from `security`. Always there for
    /// a new container: `None` only in the config of a container made
    /// before every container had a cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Capabilities, devices, seccomp, `--privileged` (see `security`).
    #[serde(default)]
    pub security: crate::security::Security,
}

/// Limits on what the container may use, and the cgroup that applies them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// The cgroup, relative to each hierarchy's root: `crabbox/<id>`.
    pub cgroup: String,
    /// `--memory`: bytes of RAM.
    pub memory: Option<u64>,
    /// `--memory-swap`: bytes of RAM *and* swap together, docker's way
    /// (default twice `memory`: as much swap as RAM; -1: unlimited swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// `--pids-limit`: how many processes and threads at most.
    pub pids: Option<u64>,
    /// `--cpus`: how many CPUs' worth of time per period (0.5 = half of one).
    pub cpus: Option<f64>,
}

/// The process that runs as PID 1 of the container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Process {
    /// argv; `args[0]` is looked up in the container's PATH if it has no `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, exactly what `execve` receives.
    pub env: Vec<String>,
    /// The working directory inside the container (created if missing, as docker does).
    pub cwd: String,
    /// `uid[:gid]` or `name[:group]`, resolved inside the container's /etc/passwd.
    pub user: String,
    /// Keep the caller's stdin (`-i`); otherwise the container reads /dev/null.
    pub stdin: bool,
    /// `-t`: the process gets a new pseudo-terminal as stdin, stdout and
    /// stderr, and as its controlling terminal (see `pty`).
    #[serde(default)]
    pub tty: bool,
    /// `--init`: a tiny init runs as PID 1 and the command as its child
    /// (see `init`).
    #[serde(default)]
    pub init: bool,
    /// Killed by the kernel if the engine process that started it dies
    /// (a foreground `run`: nothing else would ever record its exit).
    /// A detached container outlives its monitor, as docker's outlive
    /// their shim.
    #[serde(default)]
    pub die_with_parent: bool,
}

/// One mount, as `mount -t FSTYPE -o OPTIONS SOURCE DESTINATION` would do it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    /// A path inside the container.
    pub destination: String,
    /// `proc`, `tmpfs`, `sysfs`, `devpts`, … or `bind`.
    pub fstype: String,
    /// A host path for a bind mount, otherwise a label shown in `mount`.
    pub source: String,
    /// Flags (`ro`, `nosuid`, `nodev`, `noexec`, `bind`, `rbind`) and
    /// filesystem data (`mode=755`, `size=65536k`, …), as mount(8) takes them.
    pub options: Vec<String>,
}
// ANCHOR_END: spec

impl Mount {
    pub fn new(destination: &str, fstype: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.into(),
            fstype: fstype.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    /// A read-only bind mount of a host file (the container's /etc files).
    pub fn bind_file(host: &Path, destination: &str) -> Mount {
        Mount::new(
            destination,
            "bind",
            &host.to_string_lossy(),
            &["bind", "ro", "nosuid", "nodev", "noexec"],
        )
    }
}

/// The namespaces every chapter-3 container gets. The user namespace is
/// left out: root in the container is root on the host, as with docker's
/// defaults, and the capability set is what limits it.
pub const NAMESPACES: [&str; 5] = ["mount", "uts", "ipc", "pid", "network"];

// ANCHOR: default_mounts
/// Docker's default mounts: a fresh /proc, /dev as a small tmpfs (the
/// device nodes are made in it, see `devices`), /dev/pts with its own
/// instance, /dev/shm and /dev/mqueue, and /sys read-only.
pub fn default_mounts() -> Vec<Mount> {
    vec![
        Mount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        Mount::new(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::new(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        Mount::new(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        Mount::new(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ]
}
// ANCHOR_END: default_mounts

// ANCHOR: builder
/// A [`ContainerSpec`] with chapter 3's defaults: every namespace of
/// [`NAMESPACES`], docker's default mounts and security, no cgroup, and
/// the process from an image's config and the command line's overrides,
/// by docker's rules. `create::create` builds every container's spec
/// with it; a process with no container record (a build step, see
/// `step`) is built with it too.
#[derive(Clone, Debug)]
pub struct SpecBuilder {
    rootfs: PathBuf,
    image: RunConfig,
    overrides: Overrides,
    hostname: String,
    namespaces: Vec<String>,
    mounts: Vec<Mount>,
    stdin: bool,
    tty: bool,
    init: bool,
    die_with_parent: bool,
    resources: Option<Resources>,
    security: crate::security::Security,
}

impl SpecBuilder {
    /// A spec whose root is `rootfs` (mounted before the process starts).
    pub fn new(rootfs: impl Into<PathBuf>) -> SpecBuilder {
        SpecBuilder {
            rootfs: rootfs.into(),
            image: RunConfig::default(),
            overrides: Overrides::default(),
            hostname: "crabbox".into(),
            namespaces: NAMESPACES.iter().map(|s| s.to_string()).collect(),
            mounts: default_mounts(),
            stdin: false,
            tty: false,
            init: false,
            die_with_parent: true,
            resources: None,
            security: crate::security::Security::default(),
        }
    }

    /// The image's ENTRYPOINT, CMD, ENV, WORKDIR and USER.
    pub fn image(mut self, config: &RunConfig) -> Self {
        self.image = config.clone();
        self
    }

    /// What replaces the image's (the command, `-e`, `-w`, `-u`, …).
    pub fn overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// Appends a mount (after docker's defaults and those added before).
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// The host's network: no network namespace of its own, and the
    /// host's `/etc/resolv.conf` as it is (read-only), loopback resolver
    /// included, since the host's loopback is the process's too.
    pub fn host_network(mut self) -> Self {
        self.namespaces.retain(|n| n != "network");
        let resolv_conf = Path::new("/etc/resolv.conf");
        if resolv_conf.is_file() {
            self.mounts
                .push(Mount::bind_file(resolv_conf, "/etc/resolv.conf"));
        }
        self
    }

    /// `-i`, `-t`, `--init` (see [`Process`]).
    pub fn stdio(mut self, stdin: bool, tty: bool, init: bool) -> Self {
        (self.stdin, self.tty, self.init) = (stdin, tty, init);
        self
    }

    /// Killed if the engine process that started it dies (default: yes).
    pub fn die_with_parent(mut self, die: bool) -> Self {
        self.die_with_parent = die;
        self
    }

    /// Its cgroup and limits (see `cgroups`; `None`: no cgroup).
    pub fn resources(mut self, resources: Option<Resources>) -> Self {
        self.resources = resources;
        self
    }

    pub fn security(mut self, security: crate::security::Security) -> Self {
        self.security = security;
        self
    }

    /// The spec; fails when neither the image nor the overrides give a command.
    pub fn build(self) -> Result<ContainerSpec> {
        let (image, overrides) = (&self.image, &self.overrides);
        Ok(ContainerSpec {
            rootfs: self.rootfs,
            process: Process {
                args: process_args(image, overrides)?,
                env: process_env(image, overrides, &self.hostname),
                cwd: overrides
                    .workdir
                    .clone()
                    .or_else(|| image.working_dir.clone())
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| "/".into()),
                user: overrides
                    .user
                    .clone()
                    .or_else(|| image.user.clone())
                    .unwrap_or_default(),
                stdin: self.stdin,
                tty: self.tty,
                init: self.init,
                die_with_parent: self.die_with_parent,
            },
            hostname: self.hostname,
            namespaces: self.namespaces,
            mounts: self.mounts,
            resources: self.resources,
            security: self.security,
        })
    }
}
// ANCHOR_END: builder

/// What the command line says; `None` means "take the image's".
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// The words after IMAGE.
    pub command: Vec<String>,
    /// `-e KEY=VALUE` (or `-e KEY`, taken from the caller's environment).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

// ANCHOR: argv
/// argv by docker's rules: ENTRYPOINT + CMD, where the words after the
/// image replace CMD, and `--entrypoint` replaces ENTRYPOINT *and* drops the
/// image's CMD (it was written for the old entrypoint).
pub fn process_args(image: &RunConfig, overrides: &Overrides) -> Result<Vec<String>> {
    let (entrypoint, image_cmd) = match &overrides.entrypoint {
        Some(e) if e.is_empty() => (vec![], vec![]),
        Some(e) => (vec![e.clone()], vec![]),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if overrides.command.is_empty() {
        image_cmd
    } else {
        overrides.command.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::new(
            "no command specified — the image has no ENTRYPOINT or CMD; give one after the image name",
        ));
    }
    Ok(args)
}
// ANCHOR_END: argv

/// The environment: the image's, then `-e` (a later key wins), then what
/// every container gets: PATH if unset, HOSTNAME. (HOME, when unset, comes
/// from the user's /etc/passwd entry, which only the container can read.)
pub fn process_env(image: &RunConfig, overrides: &Overrides, hostname: &str) -> Vec<String> {
    let mut env = Vec::new();
    for entry in image.env.iter().flatten() {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        set_env(&mut env, k, v);
    }
    merge_env(&mut env, &overrides.env);
    set_env(&mut env, "HOSTNAME", hostname);
    if !env.iter().any(|e| env_key(e) == "PATH") {
        set_env(&mut env, "PATH", DEFAULT_PATH);
    }
    env
}

/// Adds `-e` entries to `env` (a list of `KEY=VALUE`), docker's way, for
/// `run` and `exec` alike: `KEY=VALUE` sets KEY, in place if it is there
/// (a later one wins); `KEY` alone passes the caller's value, or nothing
/// if the caller has none.
pub fn merge_env(env: &mut Vec<String>, entries: &[String]) {
    for entry in entries {
        match entry.split_once('=') {
            Some((k, v)) => set_env(env, k, v),
            None => {
                if let Ok(v) = std::env::var(entry) {
                    set_env(env, entry, &v);
                }
            }
        }
    }
}

/// Sets `key` to `value` in `env`: in place if the key is there, else at
/// the end.
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// The key of a `KEY=VALUE` entry.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        let words = |w: &[&str]| (!w.is_empty()).then(|| w.iter().map(|s| s.to_string()).collect());
        RunConfig {
            entrypoint: words(entrypoint),
            cmd: words(cmd),
            ..Default::default()
        }
    }

    fn args(image: &RunConfig, entrypoint: Option<&str>, command: &[&str]) -> Vec<String> {
        let overrides = Overrides {
            entrypoint: entrypoint.map(String::from),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        process_args(image, &overrides).unwrap()
    }

    #[test]
    fn docker_override_rules() {
        let img = image(&["/entry"], &["default"]);
        assert_eq!(args(&img, None, &[]), ["/entry", "default"]);
        assert_eq!(args(&img, None, &["x", "y"]), ["/entry", "x", "y"]);
        assert_eq!(args(&img, Some("sh"), &[]), ["sh"]);
        assert_eq!(
            args(&img, Some("sh"), &["-c", "true"]),
            ["sh", "-c", "true"]
        );
        assert_eq!(args(&img, Some(""), &["ls"]), ["ls"]);
        let cmd_only = image(&[], &["sh"]);
        assert_eq!(args(&cmd_only, None, &["ls", "-l"]), ["ls", "-l"]);
        assert!(process_args(&image(&[], &[]), &Overrides::default()).is_err());
    }

    #[test]
    fn env_overrides_and_defaults() {
        let img = RunConfig {
            env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
            ..Default::default()
        };
        let overrides = Overrides {
            env: vec!["A=2".into(), "B=x=y".into()],
            ..Default::default()
        };
        assert_eq!(
            process_env(&img, &overrides, "abc"),
            ["A=2", "PATH=/bin", "B=x=y", "HOSTNAME=abc"]
        );
    }

    #[test]
    fn exec_env_merges_like_run() {
        let mut env = vec!["A=1".to_string(), "PATH=/bin".to_string()];
        merge_env(
            &mut env,
            &[
                "PATH=/usr/bin".into(),
                "C=3".into(),
                "CRABBOX_SURELY_UNSET_VARIABLE".into(),
            ],
        );
        assert_eq!(env, ["A=1", "PATH=/usr/bin", "C=3"]);
    }
}
