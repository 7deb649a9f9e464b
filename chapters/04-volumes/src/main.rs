//! `ch04-volumes`: the commands of chapters 01 to 03 plus volumes: `-v`,
//! `--mount` and `--tmpfs` on `run`/`create`, `rm -v`, and `volume …`.

use ch01_images::cli::{self as images_cli, GlobalArgs};
use ch03_run::extension::NoExtension;
use ch04_volumes::cli::{self as volumes_cli, Command};
use clap::Parser;

// ANCHOR: main
#[derive(Parser)]
#[command(
    name = "ch04-volumes",
    version,
    about = "crabbox chapter 04: volumes: data that outlives the container",
    after_help = volumes_cli::EXAMPLES
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
    let code = volumes_cli::run_command(args.command, &args.globals, NoExtension);
    images_cli::exit_with(name, code)
}
// ANCHOR_END: main
