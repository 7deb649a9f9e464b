//! `ch02-layers`: chapter 01's image commands plus the layered filesystem:
//! mount, umount, diff, unpack, layers, history.

use ch01_images::cli::{self as images_cli, GlobalArgs};
use ch02_layers::cli::{self as layers_cli, Command};
use clap::Parser;

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

fn main() {
    let args: Cli = images_cli::parse_args();
    args.globals.apply();
    let name = args.command.name();
    images_cli::exit_with(name, layers_cli::run_command(args.command, &args.globals));
}
