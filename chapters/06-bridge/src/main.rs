//! `ch06-bridge`: the complete engine: the commands of chapters 01 to 05
//! plus bridge networking: `--network`, `-p`, `network …` and `port`.

use ch01_images::cli::{self as images_cli, GlobalArgs};
use ch03_run::extension::NoExtension;
use ch06_bridge::cli::{self as bridge_cli, Command};
use clap::Parser;

// ANCHOR: main
#[derive(Parser)]
#[command(
    name = "ch06-bridge",
    version,
    about = "crabbox chapter 06: bridge networking: each container its own interface and IP",
    after_help = bridge_cli::EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

fn main() {
    // The container's `--init` is this binary too (see chapter 3's `init`).
    ch03_run::init::main_if_init();
    let args: Cli = images_cli::parse_args();
    args.globals.apply();
    let name = args.command.name();
    let code = bridge_cli::run_command(args.command, &args.globals, NoExtension);
    images_cli::exit_with(name, code)
}
// ANCHOR_END: main
