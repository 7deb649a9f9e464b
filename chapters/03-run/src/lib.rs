//! # Chapter 03: run
//!
//! A container is not a little virtual machine: it is an ordinary process
//! of the host's kernel, started in its own namespaces, with the image's
//! tree as its `/`, and fewer privileges than root. This crate builds one,
//! step by step, the way runc does for docker. Read the modules in this order:
//!
//! 1. [`spec`]: the container as data (`ContainerSpec`, extension point: `mounts`);
//! 2. [`namespaces`]: what it gets its own copy of;
//! 3. [`mounts`], [`devices`] and [`pivot`]: its filesystem, /proc, /dev,
//!    and `pivot_root` into the image's tree (a mount's `rro` option:
//!    read-only with every submount, for a later chapter's read-only
//!    recursive binds);
//! 4. [`capabilities`] and [`user`]: root, cut down; or another user;
//!    [`seccomp_profile`]: which system calls it may make (docker's
//!    default profile, as data), and [`seccomp`]: that profile compiled
//!    to a BPF filter, loaded last before `execve`;
//! 5. the container's process: [`process`] (the engine's side: clone,
//!    the gate, wait, exit codes), [`hooks`] (the engine's code at the
//!    gate and after the exit: extension point `Hooks`), [`child`] (the
//!    child's side: its setup inside the container), [`exec_command`]
//!    (becoming the user and the command, for `run` and `exec` alike),
//!    [`signals`] (blocked, forwarded, reset before exec), [`procfs`]
//!    (what `/proc` says about a process);
//!    [`cgroups`]: resource limits ([`clone3`]: a child born in its
//!    cgroup); [`device_cgroup`]: which device files
//!    it may use, as v1 rules or as the eBPF program of [`device_bpf`];
//!    [`init`]: a tiny PID 1; [`pty`]: `-t`;
//! 6. a container on disk: [`record`] (its directory, `config.json`,
//!    `state.json` and lock), [`state`] (its [`state::Status`] and the
//!    transitions from one to the next), [`find`] (by ID, name or
//!    prefix); then its life: [`create`] ([`names`]: docker-style names
//!    for unnamed containers; [`etc`]: its `/etc/hostname`, `/etc/hosts`
//!    and `/etc/resolv.conf`), [`lifecycle`] (start, wait, start again),
//!    [`monitor`]: `run -d`; [`logs`], [`ps`], [`stop`], [`remove`] (and
//!    `--rm`'s delete), [`exec`], [`inspect`]: managing containers afterwards.
//! 7. [`extension`]: how a later chapter plugs in, without changing this
//!    one: the [`extension::Extension`] trait (extra flags on `run`,
//!    `create`, `start` and `rm`; a new container's namespaces, mounts
//!    and `/etc` files, saved in its config; `after_create`/`after_stop`;
//!    `on_remove` on every removal path; `inspect` and `ps` fields), and
//!    [`extension::Both`] to combine two. The other seams:
//!    [`etc::rewrite_etc_file`] (a running container's `/etc/hosts`,
//!    in place), [`spec::SpecBuilder`] and [`step::run_process`] (a
//!    process with no container record: a build step).
//!
//! [`cli`] is the command line: [`cli::Command`] is every command of
//! chapters 01 to 03 and [`cli::run_command`] runs one, with an extension,
//! and returns the exit code; a later chapter flattens `Command` once.

pub mod capabilities;
pub mod cgroups;
pub mod child;
pub mod cli;
pub mod clone3;
pub mod create;
pub mod device_bpf;
pub mod device_cgroup;
pub mod devices;
pub mod etc;
pub mod exec;
pub mod exec_command;
pub mod extension;
pub mod find;
pub mod hooks;
pub mod init;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod names;
pub mod namespaces;
pub mod pivot;
pub mod process;
pub mod procfs;
pub mod ps;
pub mod pty;
pub mod record;
pub mod remove;
pub mod seccomp;
pub mod seccomp_profile;
pub mod security;
pub mod signals;
pub mod spec;
pub mod state;
pub mod step;
pub mod stop;
pub mod user;
