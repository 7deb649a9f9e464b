//! `ch05-dockerfile`: the commands of chapters 01 to 04 plus the image
//! factory: `build`, `parse`, `tag`, `push` and `builder prune`.

use ch01_images::cli::{self as images_cli, GlobalArgs};
use ch03_run::extension::NoExtension;
use ch05_dockerfile::cli::{self as dockerfile_cli, Command};
use clap::Parser;

// ANCHOR: main
#[derive(Parser)]
#[command(
    name = "ch05-dockerfile",
    version,
    about = "crabbox chapter 05: the Dockerfile: build images, tag them, publish them",
    after_help = dockerfile_cli::EXAMPLES
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
    let code = dockerfile_cli::run_command(args.command, &args.globals, NoExtension);
    images_cli::exit_with(name, code)
}
// ANCHOR_END: main
