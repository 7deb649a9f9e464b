//! A process with every part of a container and no container record:
//! no directory under `ROOT/containers`, no `ps -a` line, nothing to
//! `rm`. A build step (a Dockerfile's `RUN`) is one: it runs over a root
//! filesystem someone else prepared and mounted (chapter 2's `Rootfs`),
//! and what it leaves behind is that filesystem's writable layer.
//!
//! ```text
//!  SpecBuilder::new(merged).image(…).overrides(…).host_network().build()
//!  run_process(&spec, &mut hooks)  ─▶ clone, the gate, exec … wait ─▶ exit code
//! ```
//!
//! It is a container in every security sense (namespaces, capabilities,
//! seccomp, masked paths; with a cgroup, the devices cgroup too). With
//! [`SpecBuilder::host_network`](crate::spec::SpecBuilder::host_network)
//! it shares the host's network and sees the host's own
//! `/etc/resolv.conf`: a loopback resolver (systemd-resolved's
//! 127.0.0.53) is right there, unlike in a container's own network
//! namespace (see `etc::resolv_conf`).

use crate::hooks::Hooks;
use crate::process;
use crate::spec::ContainerSpec;
use ch01_images::error::Result;
use ch01_images::explain;

// ANCHOR: run_process
/// Runs `spec`'s process to its end: spawns it over `spec.rootfs`
/// (already mounted) with `hooks`, waits for it (forwarding signals),
/// runs `hooks.after_stop`, removes its cgroup if it has one. Returns its
/// exit code, docker's way (125, 126, 127 as errors when it cannot start).
pub fn run_process(spec: &ContainerSpec, hooks: &mut dyn Hooks) -> Result<i32> {
    explain::step(
        "run a process with a container's isolation and no container record (no ps -a entry)",
        None,
    );
    let result = process::spawn(spec, hooks).and_then(|spawned| {
        let code = process::wait(spawned);
        let stopped = hooks.after_stop();
        let code = code?;
        stopped.map(|()| code)
    });
    let removed = match &spec.resources {
        Some(resources) => crate::cgroups::remove(resources),
        None => Ok(()),
    };
    let code = result?;
    removed?;
    Ok(code)
}
// ANCHOR_END: run_process
