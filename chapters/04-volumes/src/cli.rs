//! The command line of chapter 04: every command of chapters 01 to 03,
//! with this chapter's [`Volumes`] extension on `run`, `create` and `rm`
//! (`-v`, `--mount`, `--tmpfs`, `rm -v`), plus `volume create|ls|inspect|rm|prune`.
//!
//! [`Command`] flattens chapter 3's `Command` once, with
//! `Both<Volumes, E>` as its extension: a later chapter passes its own
//! extension as `E` and gets volumes too, without wrapping anything.

use crate::extension::Volumes;
use crate::volume::{self, Volume};
use ch01_images::cli::GlobalArgs;
use ch01_images::error::{Error, Result};
use ch01_images::table::{human_size, render};
use ch03_run::cli as run_cli;
use ch03_run::extension::{Both, Extension, NoExtension};
use clap::Subcommand;
use std::collections::BTreeMap;

// ANCHOR: every_command
/// Every command so far: chapter 3's (with volumes on `run`, `create`
/// and `rm`, and the extension `E` of a later chapter), then `volume …`.
#[derive(Subcommand, Clone, Debug)]
pub enum Command<E: Extension = NoExtension> {
    #[command(flatten)]
    Earlier(run_cli::Command<Both<Volumes, E>>),
    /// Manage volumes: data kept outside every container (create, ls, inspect, rm, prune)
    #[command(subcommand)]
    Volume(VolumeCommand),
}

impl<E: Extension> Command<E> {
    /// The name of the command, for error messages (`volume rm: …`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Earlier(command) => command.name(),
            Command::Volume(command) => command.name(),
        }
    }
}

/// Runs any command of chapters 01 to 04, with this chapter's extension
/// and `extension` (a later chapter's; `NoExtension` here); returns the
/// exit code.
pub fn run_command<E: Extension>(
    command: Command<E>,
    globals: &GlobalArgs,
    extension: E,
) -> Result<i32> {
    match command {
        Command::Earlier(command) => {
            run_cli::run_command(command, globals, &Both(Volumes, extension))
        }
        Command::Volume(command) => run_volume_command(command, globals),
    }
}
// ANCHOR_END: every_command

// ANCHOR: volume_commands
/// `volume …`, with docker's flags, output and exit codes.
#[derive(Subcommand, Clone, Debug)]
pub enum VolumeCommand {
    /// Create a volume (a random name if none is given); prints its name
    Create {
        /// Set a label (KEY=VALUE; repeatable)
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// The volume driver (only local: a directory under the engine root)
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only the names
        #[arg(short, long)]
        quiet: bool,
        /// `--filter KEY=VALUE` (repeatable: all must match).
        #[arg(
            short,
            long = "filter",
            value_name = "KEY=VALUE",
            help = "Filter: dangling=true|false, name=TEXT, driver=local, label=KEY[=VALUE]"
        )]
        filters: Vec<String>,
    },
    /// Show volumes as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while any container, running or not, uses one)
    #[command(alias = "remove")]
    Rm {
        /// Say nothing about volumes that do not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (with -a, unused named ones too)
    Prune {
        /// Do not ask (this engine never asks)
        #[arg(short, long)]
        force: bool,
        /// All unused volumes, named ones too
        #[arg(short, long)]
        all: bool,
    },
}
// ANCHOR_END: volume_commands

impl VolumeCommand {
    pub fn name(&self) -> &'static str {
        match self {
            VolumeCommand::Create { .. } => "volume create",
            VolumeCommand::Ls { .. } => "volume ls",
            VolumeCommand::Inspect { .. } => "volume inspect",
            VolumeCommand::Rm { .. } => "volume rm",
            VolumeCommand::Prune { .. } => "volume prune",
        }
    }
}

pub const EXAMPLES: &str = "\
Examples:
  ch04-volumes run --rm -v data:/data localhost:5000/busybox sh -c 'date >> /data/log'   # a named volume
  ch04-volumes run --rm -v data:/data localhost:5000/busybox cat /data/log               # still there
  ch04-volumes run --rm -v \"$PWD\":/src:ro localhost:5000/busybox ls /src                # a bind mount, read-only
  ch04-volumes run --rm --mount type=tmpfs,dst=/scratch localhost:5000/busybox df /scratch
  ch04-volumes --explain run --rm -v data:/data localhost:5000/busybox true             # every mkdir and mount
  ch04-volumes volume ls && ch04-volumes volume inspect data
  ch04-volumes rm -v box        # the container and its anonymous volumes
  ch04-volumes volume prune -a  # every volume no container uses";

/// Runs a `volume` command; returns the exit code.
pub fn run_volume_command(command: VolumeCommand, globals: &GlobalArgs) -> Result<i32> {
    let root = &globals.root;
    match command {
        VolumeCommand::Create {
            labels,
            driver,
            name,
        } => {
            if driver != "local" {
                return Err(Error::new(format!(
                    "volume driver {driver:?} is not available: only local (a directory under the engine root)"
                )));
            }
            let name = match name {
                Some(name) => {
                    crate::mountspec::check_volume_name(&name)?;
                    name
                }
                None => volume::anonymous_name()?,
            };
            let (volume, _) = volume::ensure(root, &name, &parse_labels(&labels)?, false)?;
            println!("{}", volume.name);
            Ok(0)
        }
        VolumeCommand::Ls { quiet, filters } => {
            let filters = parse_filters(&filters)?;
            let volumes: Vec<Volume> = volume::list(root)
                .into_iter()
                .filter(|v| filters.iter().all(|f| f.matches(root, v)))
                .collect();
            if quiet {
                for v in &volumes {
                    println!("{}", v.name);
                }
            } else {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| vec![v.driver.clone(), v.name.clone()])
                    .collect();
                print!("{}", render(&["DRIVER", "VOLUME NAME"], &rows));
            }
            Ok(0)
        }
        VolumeCommand::Inspect { names } => {
            let mut found = Vec::new();
            let mut code = 0;
            for name in &names {
                match volume::get(root, name) {
                    Some(v) => found.push(inspect_json(root, &v)),
                    None => {
                        eprintln!("volume inspect: No such volume: {name}");
                        code = 1;
                    }
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&found).expect("JSON values serialize")
            );
            Ok(code)
        }
        VolumeCommand::Rm { force, names } => {
            let mut code = 0;
            for name in &names {
                match volume::remove(root, name) {
                    Ok(()) => println!("{name}"),
                    Err(_) if force && volume::get(root, name).is_none() => {}
                    Err(e) => {
                        eprintln!("volume rm: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune { force: _, all } => prune(globals, all),
    }
}

/// `volume inspect`'s fields: docker's, plus `UsedBy` (container IDs).
pub fn inspect_json(root: &std::path::Path, v: &Volume) -> serde_json::Value {
    let mut labels = v.labels.clone();
    if v.anonymous {
        // docker 23+ marks anonymous volumes so: `volume prune` looks for it.
        labels.insert("com.docker.volume.anonymous".into(), String::new());
    }
    serde_json::json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": labels,
        "Mountpoint": volume::data_dir(root, &v.name),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
        "UsedBy": volume::users(root, &v.name),
    })
}

// ANCHOR: prune
/// `volume prune [-a]`: every unused anonymous volume (with `-a`, every
/// unused volume), and the directories a crash left without a
/// `volume.json`. Prints docker's summary.
fn prune(globals: &GlobalArgs, all: bool) -> Result<i32> {
    let root = &globals.root;
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    {
        let _lock = volume::lock(root)?;
        for name in volume::half_made(root) {
            volume::remove_dir(root, &name)?;
        }
        for v in volume::list(root) {
            if !(v.anonymous || all) || !volume::users(root, &v.name).is_empty() {
                continue;
            }
            reclaimed += volume::size(&volume::data_dir(root, &v.name));
            volume::remove_dir(root, &v.name)?;
            deleted.push(v.name);
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for name in &deleted {
            println!("{name}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}
// ANCHOR_END: prune

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                return Err(Error::new(format!("invalid label {l:?}: use KEY=VALUE")));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// One `--filter` of `volume ls`.
#[derive(Clone, Debug, PartialEq)]
enum Filter {
    Dangling(bool),
    Name(String),
    Driver(String),
    Label(String, Option<String>),
}

impl Filter {
    fn matches(&self, root: &std::path::Path, v: &Volume) -> bool {
        match self {
            Filter::Dangling(dangling) => volume::users(root, &v.name).is_empty() == *dangling,
            Filter::Name(part) => v.name.contains(part.as_str()),
            Filter::Driver(driver) => &v.driver == driver,
            Filter::Label(key, value) => match (v.labels.get(key), value) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
        }
    }
}

fn parse_filters(filters: &[String]) -> Result<Vec<Filter>> {
    filters
        .iter()
        .map(|f| {
            let bad = || {
                Error::new(format!(
                    "invalid filter '{f}' — use dangling=true|false, name=TEXT, driver=local or label=KEY[=VALUE]"
                ))
            };
            let (key, value) = f.split_once('=').ok_or_else(bad)?;
            Ok(match key {
                "dangling" => Filter::Dangling(match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad()),
                }),
                "name" => Filter::Name(value.to_string()),
                "driver" => Filter::Driver(value.to_string()),
                "label" => match value.split_once('=') {
                    Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                    None => Filter::Label(value.to_string(), None),
                },
                _ => return Err(bad()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "x",
            "run",
            "--rm",
            "-v",
            "data:/data",
            "--mount",
            "type=tmpfs,dst=/t",
            "--tmpfs",
            "/s",
            "img",
            "sh",
            "-v",
        ]);
        let Command::Earlier(run_cli::Command::Run(run_cli::RunCommand::Run(args))) = cli.command
        else {
            panic!("not run")
        };
        assert_eq!(args.extension.first.volumes, ["data:/data"]);
        assert_eq!(args.extension.first.mounts, ["type=tmpfs,dst=/t"]);
        assert_eq!(args.extension.first.tmpfs, ["/s"]);
        assert_eq!(args.command, ["sh", "-v"]);
        let cli = Cli::parse_from(["x", "rm", "-v", "-f", "box"]);
        let Command::Earlier(run_cli::Command::Run(run_cli::RunCommand::Rm {
            extension,
            force,
            ..
        })) = cli.command
        else {
            panic!("not rm")
        };
        assert!(extension.first.volumes && force);
        let cli = Cli::parse_from(["x", "volume", "ls", "-q", "--filter", "dangling=true"]);
        assert_eq!(cli.command.name(), "volume ls");
    }

    #[test]
    fn filters() {
        assert_eq!(
            parse_filters(&["dangling=true".into(), "label=a=b".into()]).unwrap(),
            [
                Filter::Dangling(true),
                Filter::Label("a".into(), Some("b".into()))
            ]
        );
        assert!(parse_filters(&["dangling=maybe".into()]).is_err());
        assert!(parse_filters(&["bogus".into()]).is_err());
        assert_eq!(parse_labels(&["a=b".into(), "c".into()]).unwrap().len(), 2);
        assert!(parse_labels(&["=x".into()]).is_err());
    }
}
