//! `ch03-run`: the commands of chapters 01 and 02 plus `run`: a real
//! container, in its own namespaces, on its own root filesystem.

use ch01_images::cli::{self as images_cli, GlobalArgs};
use ch03_run::cli::{self as run_cli, Command};
use ch03_run::extension::NoExtension;
use clap::Parser;

// ANCHOR: main
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

fn main() {
    // The container's `--init` is this binary too (see `init`).
    ch03_run::init::main_if_init();
    let args: Cli = images_cli::parse_args();
    args.globals.apply();
    let name = args.command.name();
    let code = run_cli::run_command(args.command, &args.globals, &NoExtension);
    images_cli::exit_with(name, code)
}
// ANCHOR_END: main
