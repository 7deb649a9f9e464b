//! Hooks: the engine's own code at two moments of a container's life,
//! in the spirit of the OCI runtime spec's hooks.
//!
//! ```text
//!  spawn: clone ─▶ the child waits at the gate ─▶ hooks.after_create(pid) ─▶ open the gate ─▶ exec
//!  wait:  PID 1 exits, reaped ─▶ hooks.after_stop()
//! ```
//!
//! `after_create` is the moment a later chapter needs: the child exists in
//! its new namespaces and nothing of the image has run yet (a networking
//! extension puts a network interface into its network namespace there). This is chapter
//! 3's extension point for the process; `extension::ExtensionHooks` runs
//! an extension's through it, and a build step passes its own (see `step`).

use ch01_images::error::Result;
use ch01_images::explain;
use nix::unistd::Pid;

// ANCHOR: hooks
/// Code the engine runs around the container's life, in the spirit of
/// the OCI runtime spec's hooks. Both run in the parent. A container's
/// hooks are chapter 3's narration followed by its extension's (see
/// `extension::ExtensionHooks`); a build step passes its own (see `step`).
pub trait Hooks {
    /// The child exists in its new namespaces (`pid` is its PID on the
    /// host) and waits at the gate: nothing of the image has run yet.
    /// A networking extension moves a veth end into the network namespace here. An error
    /// kills the child and fails `run` (exit code 125).
    fn after_create(&mut self, pid: Pid) -> Result<()> {
        let _ = pid;
        Ok(())
    }

    /// The container's PID 1 has exited and been reaped (cleanup).
    fn after_stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Chapter 3's hooks: nothing to wire yet, so they only narrate.
pub struct NarrateHooks;

impl Hooks for NarrateHooks {
    fn after_create(&mut self, pid: Pid) -> Result<()> {
        explain::step(
            &format!("the container exists (PID {pid} on the host, PID 1 inside) and waits for the go signal"),
            Some(&format!("ls -l /proc/{pid}/ns   # its namespaces")),
        );
        Ok(())
    }

    fn after_stop(&mut self) -> Result<()> {
        explain::step(
            "the container's PID 1 has exited; its namespaces are gone with it",
            None,
        );
        Ok(())
    }
}
// ANCHOR_END: hooks
