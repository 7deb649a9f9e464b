//! `ch02-layers`: chapter 01's image commands plus the layered filesystem:
//! mount, umount, diff, unpack, layers, history.

use ch01_images::cli::{self as images_cli, GlobalArgs, ImageCommand};
use ch02_layers::cli::{self as layers_cli, LayerCommand};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ch02-layers",
    version,
    about = "crabbox chapter 02: the layered filesystem (overlayfs, whiteouts, shared layers)",
    after_help = layers_cli::EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

// ANCHOR: command
/// Every command so far: chapter 01's, then this chapter's.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Images(ImageCommand),
    #[command(flatten)]
    Layers(LayerCommand),
}
// ANCHOR_END: command

fn main() {
    let args: Cli = images_cli::parse_args();
    args.globals.apply();
    match args.command {
        Command::Images(command) => {
            let name = images_cli::command_name(&command);
            let removes = matches!(command, ImageCommand::Rmi { .. });
            let mut result = images_cli::run_image_command(command, &args.globals);
            if removes && result.is_ok() {
                // Removing an image also removes its unpacked layers, unless shared.
                result = args.globals.store().and_then(|store| {
                    layers_cli::prune_layers(&args.globals.root, &store).map(|_| ())
                });
            }
            images_cli::exit_with(name, result)
        }
        Command::Layers(command) => {
            let name = layers_cli::command_name(&command);
            images_cli::exit_with(name, layers_cli::run_layer_command(command, &args.globals))
        }
    }
}
