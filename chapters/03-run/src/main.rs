//! `ch03-run`: the commands of chapters 01 and 02 plus `run`: a real
//! container, in its own namespaces, on its own root filesystem.

use ch01_images::cli::{self as images_cli, GlobalArgs, ImageCommand};
use ch02_layers::cli as layers_cli;
use ch03_run::cli::{self as run_cli, RunCommand};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ch03-run",
    version,
    about = "crabbox chapter 03: run a container (namespaces, pivot_root, capabilities)",
    after_help = run_cli::EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

// ANCHOR: command
/// Every command so far: chapters 01 and 02's, then this chapter's.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Earlier(layers_cli::Command),
    #[command(flatten)]
    Run(RunCommand),
}
// ANCHOR_END: command

fn main() {
    // The container's `--init` is this binary too (see `init`).
    ch03_run::init::main_if_init();
    let args: Cli = images_cli::parse_args();
    args.globals.apply();
    match args.command {
        // `inspect` is chapter 1's, for images; here a container comes
        // first, then an image, as with docker.
        Command::Earlier(layers_cli::Command::Images(ImageCommand::Inspect { images })) => {
            match ch03_run::inspect::inspect(&args.globals, &images) {
                Ok(code) => std::process::exit(code),
                Err(e) => images_cli::exit_with("inspect", Err(e)),
            }
        }
        // `rmi` is chapter 1's; here an image a container uses stays unless -f.
        Command::Earlier(layers_cli::Command::Images(ImageCommand::Rmi {
            force: false,
            images,
        })) => {
            let checked = args.globals.store().and_then(|store| {
                ch03_run::remove::refuse_rmi_of_used_images(&args.globals.root, &store, &images)
            });
            if let Err(e) = checked {
                images_cli::exit_with("rmi", Err(e));
            }
            let command = layers_cli::Command::Images(ImageCommand::Rmi {
                force: false,
                images,
            });
            images_cli::exit_with("rmi", layers_cli::run_command(command, &args.globals))
        }
        Command::Earlier(command) => {
            let name = command.name();
            images_cli::exit_with(name, layers_cli::run_command(command, &args.globals))
        }
        Command::Run(command) => {
            let name = run_cli::command_name(&command);
            match run_cli::run_run_command(command, &args.globals) {
                // The container's own exit code becomes ours.
                Ok(code) => std::process::exit(code),
                Err(e) => images_cli::exit_with(name, Err(e)),
            }
        }
    }
}
