//! The command line of chapter 05: every command of chapters 01 to 04
//! (with chapter 4's volumes on `run`), plus the image factory: `build`,
//! `parse`, `tag`, `push` and `builder prune`.
//!
//! [`Command`] flattens chapter 4's `Command` once and passes a later
//! chapter's extension `E` along, as chapter 4 does with chapter 3's.

use ch01_images::cli::GlobalArgs;
use ch01_images::error::{Error, Result};
use ch03_run::extension::{Extension, NoExtension};
use ch04_volumes::cli as volumes_cli;
use clap::{Args, Subcommand};
use std::path::PathBuf;

// ANCHOR: every_command
/// Every command so far (chapter 4's, with the extension `E` of a later
/// chapter), then this chapter's.
#[derive(Subcommand, Clone, Debug)]
pub enum Command<E: Extension = NoExtension> {
    #[command(flatten)]
    Earlier(volumes_cli::Command<E>),
    #[command(flatten)]
    Image(ImageFactory),
}

/// This chapter's commands.
#[derive(Subcommand, Clone, Debug)]
pub enum ImageFactory {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Show how a Dockerfile is read: stages, instructions, flags, arguments
    Parse {
        /// Print buildkit's s-expression dump (what its parser tests compare)
        #[arg(long)]
        sexp: bool,
        /// Build arguments to substitute (KEY=VALUE; repeatable)
        #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
        build_args: Vec<String>,
        file: PathBuf,
    },
    /// Give an image another name (SOURCE and TARGET as `NAME[:TAG]`)
    Tag { source: String, target: String },
    /// Upload an image to its registry
    Push {
        /// Print only the pushed name (NAME:TAG)
        #[arg(short, long)]
        quiet: bool,
        name: String,
    },
    /// Manage the build cache
    #[command(subcommand)]
    Builder(BuilderCommand),
}

impl<E: Extension> Command<E> {
    /// The name of the command, for error messages (`build: …`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Earlier(command) => command.name(),
            Command::Image(command) => command.name(),
        }
    }
}

/// Runs any command of chapters 01 to 05 with `extension` (a later
/// chapter's; `NoExtension` here); returns the exit code.
pub fn run_command<E: Extension>(
    command: Command<E>,
    globals: &GlobalArgs,
    extension: E,
) -> Result<i32> {
    match command {
        Command::Earlier(command) => volumes_cli::run_command(command, globals, extension),
        Command::Image(command) => run_factory_command(command, globals),
    }
}
// ANCHOR_END: every_command

// ANCHOR: build_args
/// `build`'s flags, docker's names.
#[derive(Args, Clone, Debug)]
pub struct BuildArgs {
    /// Name the image `NAME[:TAG]` (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile); may be outside the context
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build argument (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs), not the last one
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Reuse nothing from the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the image ID
    #[arg(short, long)]
    pub quiet: bool,
    /// Add a label to the image (KEY=VALUE; repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The build context: the directory COPY and ADD read from
    pub context: PathBuf,
}
// ANCHOR_END: build_args

/// `builder …`.
#[derive(Subcommand, Clone, Debug)]
pub enum BuilderCommand {
    /// Remove the build cache (and what killed builds left behind)
    Prune {
        /// Do not ask (this engine never asks)
        #[arg(short, long)]
        force: bool,
        /// Also remove cache still in use (accepted; all cache is removed)
        #[arg(short, long)]
        all: bool,
    },
}

impl ImageFactory {
    pub fn name(&self) -> &'static str {
        match self {
            ImageFactory::Build(_) => "build",
            ImageFactory::Parse { .. } => "parse",
            ImageFactory::Tag { .. } => "tag",
            ImageFactory::Push { .. } => "push",
            ImageFactory::Builder(BuilderCommand::Prune { .. }) => "builder prune",
        }
    }
}

pub const EXAMPLES: &str = "\
Examples:
  ch05-dockerfile build -t hello:1 .                       # ./Dockerfile, context .
  ch05-dockerfile build -t notes-app -f app.dockerfile .   # one of a project's Dockerfiles
  ch05-dockerfile build --build-arg VERSION=2 --target test .
  ch05-dockerfile parse --sexp Dockerfile                  # how the file was read
  ch05-dockerfile history hello:1                          # one line per instruction
  ch05-dockerfile tag hello:1 localhost:5000/hello:1
  ch05-dockerfile push localhost:5000/hello:1
  ch05-dockerfile builder prune                            # forget the build cache";

/// Runs one of this chapter's commands; returns the exit code.
pub fn run_factory_command(command: ImageFactory, globals: &GlobalArgs) -> Result<i32> {
    match command {
        ImageFactory::Build(args) => crate::builder::build_command(globals, &args),
        ImageFactory::Parse {
            sexp,
            build_args,
            file,
        } => crate::show::parse_command(&file, sexp, &build_args),
        ImageFactory::Tag { source, target } => tag(globals, &source, &target),
        ImageFactory::Push { quiet, name } => crate::push::push_command(globals, &name, quiet),
        ImageFactory::Builder(BuilderCommand::Prune { .. }) => crate::cache::prune_command(globals),
    }
}

// ANCHOR: tag
/// `tag SOURCE TARGET`: one more name in the store's index for the same
/// manifest. Nothing is copied: a name is a pointer.
pub fn tag(globals: &GlobalArgs, source: &str, target: &str) -> Result<i32> {
    let store = globals.store()?;
    let image = store.get(source)?;
    let target = ch01_images::reference::Reference::parse(target).map_err(|e| {
        Error::new(format!(
            "invalid target name {target:?}: {} — write NAME[:TAG]",
            e.message()
        ))
    })?;
    if target.manifest_reference().starts_with("sha256:") {
        return Err(Error::new(
            "a tag cannot be a digest: write NAME[:TAG] for the target",
        ));
    }
    store.set_ref(&target.store_name(), image.descriptor.clone())?;
    Ok(0)
}
// ANCHOR_END: tag
