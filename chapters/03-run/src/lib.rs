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
//!    and `pivot_root` into the image's tree;
//! 4. [`capabilities`] and [`user`]: root, cut down; or another user;
//!    [`seccomp_profile`]: which system calls it may make (docker's
//!    default profile, as data), and [`seccomp`]: that profile compiled
//!    to a BPF filter, loaded last before `execve`;
//! 5. [`process`]: clone, the gate, exec, signals (extension point: `Hooks`);
//!    [`cgroups`]: resource limits; [`device_cgroup`]: which device files
//!    it may use, as v1 rules or as the eBPF program of [`device_bpf`];
//!    [`init`]: a tiny PID 1; [`pty`]: `-t`;
//! 6. [`lifecycle`]: create, start, wait, delete, with state on disk
//!    ([`names`]: docker-style names for unnamed containers);
//!    [`monitor`]: `run -d`; [`logs`], [`ps`], [`stop`], [`remove`],
//!    [`exec`], [`inspect`]: managing containers afterwards.
//!
//! [`cli`] is the command line.

pub mod capabilities;
pub mod cgroups;
pub mod cli;
pub mod device_bpf;
pub mod device_cgroup;
pub mod devices;
pub mod exec;
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
pub mod ps;
pub mod pty;
pub mod remove;
pub mod seccomp;
pub mod seccomp_profile;
pub mod security;
pub mod spec;
pub mod stop;
pub mod user;
