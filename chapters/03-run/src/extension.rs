//! How a later chapter plugs in: one trait, [`Extension`], whose methods
//! all do nothing by default, called by this chapter's command line and
//! lifecycle at each point where a later chapter has something to add.
//!
//! ```text
//!  run/create ─▶ flags (RunArgs) ─▶ create: namespaces, mounts, /etc files, saved data
//!  start      ─▶ flags (StartArgs) ─▶ before_start
//!  the child at the gate ─▶ after_create(pid)      PID 1 reaped ─▶ after_stop
//!  rm, rm -f, prune, --rm (foreground or monitor) ─▶ on_remove, from config.json alone
//!  inspect ─▶ extra fields          ps ─▶ the PORTS column
//! ```
//!
//! An extension is a value of a type that implements [`Extension`]; its
//! flags are a clap `Args` type, flattened into `run`, `create`, `start`
//! and `rm` through a type parameter (the commands of this chapter are
//! `RunCommand<E>`, with [`NoExtension`] by default). Two extensions are
//! one with [`Both`]: the next chapter passes `Both(its_own, e)` on to this
//! chapter, where `e` is whatever the chapter after it gave it, so each
//! chapter adds its own extension without wrapping the others by hand.
//!
//! What an extension needs to find again later (a volume's name, an IP
//! address) it saves in the container's config, under its own name in
//! [`Config::extensions`](crate::record::Config::extensions): `rm`
//! and `prune` work from what is on disk alone, so `on_remove` also runs
//! for a container whose monitor was SIGKILLed.

use crate::lifecycle::Container;
use crate::record::Config;
use crate::spec::ContainerSpec;
use ch01_images::error::Result;
use ch01_images::store::{Image, Store};
use clap::Args;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

// ANCHOR: extension
/// What a later chapter adds to this one. Every method has a default
/// that does nothing, so an extension implements only what it needs.
/// (`Sync`: `rm` removes several containers on several threads at once.)
pub trait Extension: Sync {
    /// Extra flags of `run` and `create` (e.g. `-v`, `-p`, `--network`).
    type RunArgs: Args + Clone + Debug + Default + Sync;
    /// Extra flags of `start`.
    type StartArgs: Args + Clone + Debug + Default + Sync;
    /// Extra flags of `rm` (`prune` and `--rm` pass the defaults).
    type RmArgs: Args + Clone + Debug + Default + Sync;

    /// A new container, named and with its writable layer prepared, before
    /// its `/etc` files are written and before anything runs: change its
    /// namespaces, append mounts (after the default mounts and the `/etc`
    /// binds), set its `/etc/hosts` or `/etc/resolv.conf`, and save what
    /// `on_remove` will need. An error removes the container (and calls
    /// `on_remove`).
    fn create(&self, args: &Self::RunArgs, new: &mut Creating) -> Result<()> {
        let _ = (args, new);
        Ok(())
    }

    /// The container is about to start (`run`, `start`, `start -a`, the
    /// monitor of `-d` and `start`): a last change to its spec for this run.
    fn before_start(&self, args: &Self::StartArgs, container: &mut Container) -> Result<()> {
        let _ = (args, container);
        Ok(())
    }

    /// Its PID 1 exists in its namespaces (`pid` on the host) and waits at
    /// the gate. An error kills it and fails the start (exit code 125).
    fn after_create(&self, container: &Container, pid: Pid) -> Result<()> {
        let _ = (container, pid);
        Ok(())
    }

    /// Its PID 1 has exited and been reaped.
    fn after_stop(&self, container: &Container) -> Result<()> {
        let _ = container;
        Ok(())
    }

    /// The container is being removed, by any path: `rm`, `rm -f`,
    /// `prune`, `--rm` (in the foreground or in the monitor), a failed
    /// `create`. Only its config is known: its processes are gone, its
    /// directory still there. `rm` of several containers calls it on
    /// several threads at once: no forking into namespaces here.
    fn on_remove(&self, args: &Self::RmArgs, removed: &Removing) -> Result<()> {
        let _ = (args, removed);
        Ok(())
    }

    /// Extra fields for `inspect` (e.g. `NetworkSettings`), set on its JSON.
    fn inspect(&self, config: &Config, json: &mut serde_json::Value) {
        let _ = (config, json);
    }

    /// The container's `PORTS` column in `ps` (empty: none).
    fn ports(&self, config: &Config) -> String {
        let _ = config;
        String::new()
    }
}
// ANCHOR_END: extension

// ANCHOR: creating
/// A container being created, as an extension sees it.
pub struct Creating<'a> {
    pub root: &'a Path,
    pub store: &'a Store,
    pub image: &'a Image,
    /// `ROOT/containers/<id>`.
    pub dir: &'a Path,
    /// Its ID and (unique) name are chosen already.
    pub id: &'a str,
    pub name: &'a str,
    /// Its namespaces (drop `"network"` for the host's network) and
    /// mounts (append: the defaults and the `/etc` binds are there).
    pub spec: &'a mut ContainerSpec,
    /// The contents of its `/etc/hosts` and `/etc/resolv.conf`.
    pub etc: &'a mut EtcFiles,
    /// Saved in its config, by extension name (see [`Creating::save`]).
    pub extensions: &'a mut BTreeMap<String, serde_json::Value>,
}

impl Creating<'_> {
    /// Saves `value` under `name` in the container's config.
    pub fn save(&mut self, name: &str, value: impl serde::Serialize) {
        let value = serde_json::to_value(value).expect("serializes");
        self.extensions.insert(name.to_string(), value);
    }
}

/// The contents of a new container's `/etc/hosts` and `/etc/resolv.conf`
/// (its `/etc/hostname` is its hostname). Once it runs, change them with
/// `etc::rewrite_etc_file`, in place.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcFiles {
    pub hosts: String,
    pub resolv_conf: String,
}

/// A container being removed: what its config says.
pub struct Removing<'a> {
    pub root: &'a Path,
    pub dir: &'a Path,
    pub config: &'a Config,
}

impl Removing<'_> {
    /// What the extension `name` saved at creation, if anything.
    pub fn saved<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.config.saved(name)
    }
}
// ANCHOR_END: creating

/// No extension: chapter 03 alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoExtension;

/// No extra flags. (`group(skip)`: clap names a group after each flags
/// struct, and two of one name clash; give your own flags a name of their
/// own, or `group(skip)` too.)
#[derive(Args, Clone, Copy, Debug, Default)]
#[group(skip)]
pub struct NoArgs {}

impl Extension for NoExtension {
    type RunArgs = NoArgs;
    type StartArgs = NoArgs;
    type RmArgs = NoArgs;
}

// ANCHOR: both
/// Two extensions as one: `A`'s part of each step first, then `B`'s.
#[derive(Clone, Copy, Debug, Default)]
pub struct Both<A, B>(pub A, pub B);

/// The flags of two extensions, side by side.
#[derive(Args, Clone, Debug, Default)]
#[group(skip)]
pub struct BothArgs<A: Args, B: Args> {
    #[command(flatten)]
    pub first: A,
    #[command(flatten)]
    pub second: B,
}

impl<A: Extension, B: Extension> Extension for Both<A, B> {
    type RunArgs = BothArgs<A::RunArgs, B::RunArgs>;
    type StartArgs = BothArgs<A::StartArgs, B::StartArgs>;
    type RmArgs = BothArgs<A::RmArgs, B::RmArgs>;

    fn create(&self, args: &Self::RunArgs, new: &mut Creating) -> Result<()> {
        self.0.create(&args.first, new)?;
        self.1.create(&args.second, new)
    }

    fn before_start(&self, args: &Self::StartArgs, container: &mut Container) -> Result<()> {
        self.0.before_start(&args.first, container)?;
        self.1.before_start(&args.second, container)
    }

    fn after_create(&self, container: &Container, pid: Pid) -> Result<()> {
        self.0.after_create(container, pid)?;
        self.1.after_create(container, pid)
    }

    /// Both run, even when the first fails: each cleans up its own.
    fn after_stop(&self, container: &Container) -> Result<()> {
        let first = self.0.after_stop(container);
        let second = self.1.after_stop(container);
        first.and(second)
    }

    /// Both run, even when the first fails: each cleans up its own.
    fn on_remove(&self, args: &Self::RmArgs, removed: &Removing) -> Result<()> {
        let first = self.0.on_remove(&args.first, removed);
        let second = self.1.on_remove(&args.second, removed);
        first.and(second)
    }

    fn inspect(&self, config: &Config, json: &mut serde_json::Value) {
        self.0.inspect(config, json);
        self.1.inspect(config, json);
    }

    fn ports(&self, config: &Config) -> String {
        let ports = [self.0.ports(config), self.1.ports(config)];
        let ports: Vec<String> = ports.into_iter().filter(|p| !p.is_empty()).collect();
        ports.join(", ")
    }
}
// ANCHOR_END: both

// ANCHOR: hooks
/// The process hooks of a container with an extension: chapter 3's
/// narration, then the extension's `after_create` and `after_stop`.
pub struct ExtensionHooks<'a, E: Extension> {
    pub extension: &'a E,
    pub container: &'a Container,
}

impl<E: Extension> crate::hooks::Hooks for ExtensionHooks<'_, E> {
    fn after_create(&mut self, pid: Pid) -> Result<()> {
        crate::hooks::NarrateHooks.after_create(pid)?;
        self.extension.after_create(self.container, pid)
    }

    fn after_stop(&mut self) -> Result<()> {
        crate::hooks::NarrateHooks.after_stop()?;
        self.extension.after_stop(self.container)
    }
}
// ANCHOR_END: hooks

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// An extension with a flag on every command it can add one to.
    #[derive(Default)]
    struct Flags;

    #[derive(Args, Clone, Debug, Default)]
    struct FlagArgs {
        #[arg(long)]
        flag: bool,
    }

    #[derive(Args, Clone, Debug, Default)]
    struct OtherArgs {
        #[arg(long)]
        other: Option<String>,
    }

    impl Extension for Flags {
        type RunArgs = FlagArgs;
        type StartArgs = FlagArgs;
        type RmArgs = OtherArgs;
        fn ports(&self, _: &Config) -> String {
            "80/tcp".into()
        }
    }

    #[derive(Parser)]
    struct Cli<E: Extension> {
        #[command(subcommand)]
        command: crate::cli::Command<E>,
    }

    #[test]
    fn extensions_combine_without_clashing_flags() {
        Cli::<NoExtension>::command().debug_assert();
        Cli::<Both<NoExtension, NoExtension>>::command().debug_assert();
        Cli::<Both<Flags, Both<NoExtension, NoExtension>>>::command().debug_assert();
        let cli = Cli::<Both<NoExtension, Flags>>::parse_from(["x", "rm", "--other", "o", "c"]);
        let crate::cli::Command::Run(crate::cli::RunCommand::Rm { extension, .. }) = cli.command
        else {
            panic!("not rm")
        };
        assert_eq!(extension.second.other.as_deref(), Some("o"));
        let cli = Cli::<Both<Flags, NoExtension>>::parse_from(["x", "run", "--flag", "img"]);
        let crate::cli::Command::Run(crate::cli::RunCommand::Run(args)) = cli.command else {
            panic!("not run")
        };
        assert!(args.extension.first.flag);
    }
}
