//! The command line of chapter 03: `run`. [`RunCommand`] is flattened
//! after chapter 1's `ImageCommand` and chapter 2's `LayerCommand` in this
//! chapter's binary, as chapter 2 does with chapter 1's.

use crate::lifecycle::{self, CreateOptions};
use crate::process::NarrateHooks;
use crate::spec::Overrides;
use ch01_images::cli::GlobalArgs;
use ch01_images::error::{Error, Result};
use ch01_images::pull::{pull, PullOptions};
use ch01_images::reference::Reference;
use ch01_images::store::{Image, Store};
use clap::{Args, Subcommand};
use std::io::Write;
use std::os::fd::AsRawFd;

// ANCHOR: commands
/// The container commands (chapter 03).
#[derive(Subcommand, Clone, Debug)]
pub enum RunCommand {
    /// Create and start a container from an image (pulled first if missing), and wait for it
    Run(RunArgs),
}

/// `run [OPTIONS] IMAGE [COMMAND [ARG...]]`, with docker's flags.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Remove the container (writable layer included) when it exits
    #[arg(long)]
    pub rm: bool,
    /// A name for the container (unique)
    #[arg(long)]
    pub name: Option<String>,
    /// The container's hostname (default: the first 12 hex digits of its ID)
    // docker also spells it `-h`; here `-h` stays `--help`, as in every chapter.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this shell's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as this user: UID, UID:GID, NAME or NAME:GROUP (names from the image's /etc/passwd)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Replace the image's ENTRYPOINT ("" clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep stdin attached (otherwise the container reads /dev/null)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// The image, e.g. busybox or localhost:5000/app:v1
    pub image: String,
    /// The command and its arguments (default: the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
// ANCHOR_END: commands

pub const EXAMPLES: &str = "\
Examples:
  ch03-run run --rm localhost:5000/busybox echo hello
  ch03-run run --rm localhost:5000/busybox sh -c 'echo $$; hostname; ps'   # PID 1, own hostname, own processes
  ch03-run --explain run --rm localhost:5000/busybox true                  # every namespace, mount and capability step
  ch03-run run --name box -e GREETING=hi -w /tmp --user 1000:1000 localhost:5000/busybox id";

/// The name of a command, for error messages.
pub fn command_name(command: &RunCommand) -> &'static str {
    match command {
        RunCommand::Run(_) => "run",
    }
}

/// Runs a container command; returns the exit code `run` must exit with.
pub fn run_run_command(command: RunCommand, globals: &GlobalArgs) -> Result<i32> {
    match command {
        RunCommand::Run(args) => run(args, globals),
    }
}

// ANCHOR: run
/// `run` = pull if missing + create + start + wait (+ delete with `--rm`).
/// (Detached `-d`, a later step, will be the same without the wait.)
pub fn run(args: RunArgs, globals: &GlobalArgs) -> Result<i32> {
    let store = globals.store()?;
    // Pulling uses threads; they are all joined when it returns, before
    // any namespace work (which needs a single-threaded process).
    let image = image_or_pull(globals, &store, &args.image)?;
    let options = CreateOptions {
        name: args.name,
        hostname: args.hostname,
        overrides: Overrides {
            entrypoint: args.entrypoint,
            command: args.command,
            env: args.env,
            workdir: args.workdir,
            user: args.user,
        },
        stdin: args.interactive,
    };
    let container = lifecycle::create(&globals.root, &store, &image, &args.image, &options)?;
    let mut hooks = NarrateHooks;
    let result = lifecycle::start(&container, &mut hooks)
        .and_then(|pid| lifecycle::wait(&container, pid, &mut hooks));
    if args.rm {
        // Even when starting failed: --rm leaves nothing behind.
        let removed = lifecycle::delete(container);
        let code = result?;
        removed?;
        return Ok(code);
    }
    result
}
// ANCHOR_END: run

/// The image from the store, or pulled first as docker does ("Unable to
/// find image … locally"). Pull messages go to stderr: stdout is the
/// container's alone.
fn image_or_pull(globals: &GlobalArgs, store: &Store, name: &str) -> Result<Image> {
    if let Some(image) = store.find(name)? {
        return Ok(image);
    }
    let reference = Reference::parse(name)?;
    eprintln!("Unable to find image '{}' locally", reference.familiar());
    let pulled = with_stdout_on_stderr(|| {
        pull(
            store,
            &reference,
            &globals.registry_options(),
            &PullOptions::default(),
        )
    })?;
    Ok(pulled)
}

/// Runs `f` with file descriptor 1 pointing at stderr, then puts it back.
fn with_stdout_on_stderr<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let saved = nix::unistd::dup(1).map_err(|e| Error::new(format!("dup stdout: {e}")))?;
    let _ = std::io::stdout().flush();
    nix::unistd::dup2(std::io::stderr().as_raw_fd(), 1)
        .map_err(|e| Error::new(format!("dup2: {e}")))?;
    let result = f();
    let _ = std::io::stdout().flush();
    let _ = nix::unistd::dup2(saved, 1);
    let _ = nix::unistd::close(saved);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: RunCommand,
    }

    #[test]
    fn flags_are_consistent_and_the_command_keeps_its_own_flags() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "x",
            "run",
            "--rm",
            "-e",
            "A=1",
            "img",
            "sh",
            "-c",
            "echo -n hi",
            "--rm",
        ]);
        let RunCommand::Run(args) = cli.command;
        assert!(args.rm);
        assert_eq!(args.env, ["A=1"]);
        assert_eq!(args.image, "img");
        assert_eq!(args.command, ["sh", "-c", "echo -n hi", "--rm"]);
    }
}
