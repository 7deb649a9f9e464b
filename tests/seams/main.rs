//! `crabbox-seams`: a chapter-03 engine with two extensions, built only
//! through chapter 03's public seams (its `Command`, `run_command`, the
//! `Extension` trait, `Both`, `SpecBuilder` and `run_process`), as
//! chapters 04 to 06 are. `tests/seams.rs` drives it.
//!
//! * `Probe` adds `--probe-mount HOST:CTR` (a bind mount, saved in the
//!   config), `--probe-note TEXT` (saved for `on_remove`), a line in the
//!   container's `/etc/hosts`, a `PORTS` value and an `inspect` field, and
//!   logs `after_create`, `after_stop` and `on_remove` to
//!   `ROOT/seams-events`.
//! * `Tagger` adds `--tag` to `run` and `--untag` to `rm`, and an
//!   `inspect` field: combined with `Probe` by `Both`, untouched by it.
//! * `step IMAGE COMMAND…` runs a command over the image's layers with
//!   no container record, on the host's network.

use ch01_images::cli::{self as images_cli, GlobalArgs};
use ch01_images::durable::Flush;
use ch01_images::error::{Error, Result};
use ch02_layers::rootfs::Rootfs;
use ch03_run::cli::{self as run_cli, Command};
use ch03_run::extension::{Both, Creating, Extension, NoArgs, Removing};
use ch03_run::hooks::NarrateHooks;
use ch03_run::lifecycle::{Config, Container};
use ch03_run::spec::{Mount, Overrides, SpecBuilder};
use clap::{Args, Parser, Subcommand};
use nix::unistd::Pid;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "crabbox-seams", version)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: SeamsCommand,
}

#[derive(Subcommand)]
enum SeamsCommand {
    #[command(flatten)]
    Earlier(Command<Both<Probe, Tagger>>),
    /// Run a command over an image's layers as a build step (no container record)
    Step {
        image: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Appends one line to `ROOT/seams-events`.
fn event(root: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("seams-events"))
        .expect("events file");
    writeln!(file, "{line}").expect("event written");
}

/// `ROOT/containers/<id>` → `ROOT`.
fn root_of(container: &Container) -> &Path {
    container.dir.parent().and_then(Path::parent).expect("ROOT")
}

struct Probe;

#[derive(Args, Clone, Debug, Default)]
struct ProbeArgs {
    /// Bind a host directory: HOST:CTR
    #[arg(long = "probe-mount", value_name = "HOST:CTR")]
    mount: Option<String>,
    /// A note saved in the config, read back by on_remove
    #[arg(long = "probe-note")]
    note: Option<String>,
}

impl Extension for Probe {
    type RunArgs = ProbeArgs;
    type StartArgs = NoArgs;
    type RmArgs = NoArgs;

    fn create(&self, args: &ProbeArgs, new: &mut Creating) -> Result<()> {
        if let Some(mount) = &args.mount {
            let (host, ctr) = mount
                .split_once(':')
                .ok_or_else(|| Error::new("--probe-mount wants HOST:CTR"))?;
            new.spec
                .mounts
                .push(Mount::new(ctr, "bind", host, &["rbind", "rw"]));
        }
        new.etc.hosts.push_str("10.9.8.7\tseam-peer\n");
        let note = args.note.clone().unwrap_or_default();
        new.save("probe", note);
        event(new.root, &format!("create {}", new.name));
        Ok(())
    }

    fn after_create(&self, container: &Container, pid: Pid) -> Result<()> {
        let name = &container.config.name;
        event(root_of(container), &format!("after_create {name} {pid}"));
        Ok(())
    }

    fn after_stop(&self, container: &Container) -> Result<()> {
        let name = &container.config.name;
        event(root_of(container), &format!("after_stop {name}"));
        Ok(())
    }

    fn on_remove(&self, _: &NoArgs, removed: &Removing) -> Result<()> {
        let note: String = removed.saved("probe").unwrap_or_default();
        let name = &removed.config.name;
        event(removed.root, &format!("on_remove {name} note={note}"));
        Ok(())
    }

    fn inspect(&self, config: &Config, json: &mut serde_json::Value) {
        json["Probe"] = config.saved::<String>("probe").into();
    }

    fn ports(&self, config: &Config) -> String {
        format!(
            "probe:{}",
            config.saved::<String>("probe").unwrap_or_default()
        )
    }
}

struct Tagger;

#[derive(Args, Clone, Debug, Default)]
struct TagArgs {
    /// A tag saved in the config
    #[arg(long)]
    tag: Option<String>,
}

#[derive(Args, Clone, Debug, Default)]
struct UntagArgs {
    /// Say so when removing
    #[arg(long)]
    untag: bool,
}

impl Extension for Tagger {
    type RunArgs = TagArgs;
    type StartArgs = NoArgs;
    type RmArgs = UntagArgs;

    fn create(&self, args: &TagArgs, new: &mut Creating) -> Result<()> {
        if let Some(tag) = &args.tag {
            new.save("tag", tag);
        }
        Ok(())
    }

    fn on_remove(&self, args: &UntagArgs, removed: &Removing) -> Result<()> {
        if args.untag {
            let tag: String = removed.saved("tag").unwrap_or_default();
            event(
                removed.root,
                &format!("untag {} {tag}", removed.config.name),
            );
        }
        Ok(())
    }

    fn inspect(&self, config: &Config, json: &mut serde_json::Value) {
        json["Tag"] = config.saved::<String>("tag").into();
    }
}

/// `step IMAGE COMMAND…`: the image's layers under a fresh writable
/// layer in `ROOT/steps/<pid>`, mounted, the command run with chapter
/// 03's parts, everything removed afterwards.
fn step(globals: &GlobalArgs, image: &str, command: Vec<String>) -> Result<i32> {
    let store = globals.store()?;
    let image = store
        .find(image)?
        .ok_or_else(|| Error::new(format!("no image {image}: pull it first")))?;
    let dir: PathBuf = globals
        .root
        .join("steps")
        .join(std::process::id().to_string());
    let merged = dir.join("merged");
    let rootfs = Rootfs::prepare(&globals.root, &store, &image, &dir, &merged, Flush::Later)?;
    let result = rootfs.mount().and_then(|()| {
        let spec = SpecBuilder::new(&merged)
            .image(&image.config.config)
            .overrides(Overrides {
                command,
                ..Overrides::default()
            })
            .hostname("step")
            .host_network()
            .build()?;
        ch03_run::step::run_process(&spec, &mut NarrateHooks)
    });
    let removed = rootfs.remove();
    let _ = std::fs::remove_dir_all(&dir);
    let code = result?;
    removed?;
    Ok(code)
}

fn main() {
    ch03_run::init::main_if_init();
    let args: Cli = images_cli::parse_args();
    args.globals.apply();
    match args.command {
        SeamsCommand::Earlier(command) => {
            let name = command.name();
            let code = run_cli::run_command(command, &args.globals, &Both(Probe, Tagger));
            images_cli::exit_with(name, code)
        }
        SeamsCommand::Step { image, command } => {
            images_cli::exit_with("step", step(&args.globals, &image, command))
        }
    }
}
