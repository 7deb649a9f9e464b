//! `ch01-images`: the chapter 01 engine: pull, list, inspect, remove, save
//! and load images.

use ch01_images::cli::{self, GlobalArgs, ImageCommand};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ch01-images",
    version,
    about = "crabbox chapter 01: container images, pulled from a real registry",
    after_help = cli::EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: ImageCommand,
}

fn main() {
    let args: Cli = cli::parse_args();
    args.globals.apply();
    let name = cli::command_name(&args.command);
    cli::exit_with(name, cli::run_image_command(args.command, &args.globals));
}
