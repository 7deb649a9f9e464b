//! The command line of chapter 03: `run`, and the commands that manage
//! containers afterwards: `ps`, `logs`, `stop`, `kill`, `rm`, `prune`,
//! `exec` (and `inspect`, which looks for a container before an image).
//! [`Command`] is every command so far: chapter 2's [`Command`](layers_cli::Command)
//! flattened, then [`RunCommand`]; [`run_command`] runs one and returns
//! the exit code. The commands take a type parameter, the
//! [`Extension`] whose flags and steps a later chapter adds (none here).

use crate::create::CreateOptions;
use crate::exec::{self, ExecOptions};
use crate::extension::{Extension, ExtensionHooks, NoArgs, NoExtension};
use crate::find::find;
use crate::lifecycle::{self, Container};
use crate::spec::Overrides;
use crate::state::effective_state;
use crate::{logs, monitor, ps, remove, stop};
use ch01_images::cli::{image_or_pull, GlobalArgs, ImageCommand};
use ch01_images::error::{Error, ErrorKind, Result};
use ch02_layers::cli as layers_cli;
use clap::{Args, Subcommand};

// ANCHOR: every_command
/// Every command so far: chapters 01 and 02's, then this chapter's, with
/// the flags of the extension `E` (a later chapter's; none by default).
#[derive(Subcommand, Clone, Debug)]
pub enum Command<E: Extension = NoExtension> {
    #[command(flatten)]
    Earlier(layers_cli::Command),
    #[command(flatten)]
    Run(RunCommand<E>),
}

impl<E: Extension> Command<E> {
    /// The name of the command, for error messages (`run: …`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Earlier(command) => command.name(),
            Command::Run(command) => command_name(command),
        }
    }
}

/// Runs any command of chapters 01 to 03 with `extension`; returns the
/// exit code (`run`'s is the container's). The commands this chapter
/// changes come first (`inspect`: a container before an image; `rmi`: not
/// an image a container uses); the rest are chapter 2's, as they were.
pub fn run_command<E: Extension>(
    command: Command<E>,
    globals: &GlobalArgs,
    extension: &E,
) -> Result<i32> {
    match command {
        Command::Earlier(layers_cli::Command::Images(ImageCommand::Inspect { images })) => {
            crate::inspect::inspect(globals, &images, extension)
        }
        Command::Earlier(layers_cli::Command::Images(ImageCommand::Rmi {
            force: false,
            images,
        })) => {
            remove::refuse_rmi_of_used_images(&globals.root, &globals.store()?, &images)?;
            let command = ImageCommand::Rmi {
                force: false,
                images,
            };
            layers_cli::run_command(layers_cli::Command::Images(command), globals)
        }
        Command::Earlier(command) => layers_cli::run_command(command, globals),
        Command::Run(command) => run_run_command(command, globals, extension),
    }
}
// ANCHOR_END: every_command

// ANCHOR: commands
/// The container commands (chapter 03), with an extension's flags on
/// `run`, `create`, `start` and `rm`.
#[derive(Subcommand, Clone, Debug)]
pub enum RunCommand<E: Extension = NoExtension> {
    /// Create and start a container from an image (pulled first if missing), and wait for it
    #[command(disable_help_flag = true)]
    Run(Box<RunArgs<E::RunArgs>>),
    /// Create a container without starting it (run's flags; start it with start)
    #[command(disable_help_flag = true)]
    Create(Box<RunArgs<E::RunArgs>>),
    /// List containers (running ones; all with -a)
    Ps {
        /// Show all containers, stopped ones too
        #[arg(short, long)]
        all: bool,
        /// Show only IDs
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate IDs and commands
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show a detached container's output (stdout and stderr)
    Logs {
        /// Keep following the output until the container exits
        #[arg(short, long)]
        follow: bool,
        container: String,
    },
    /// Stop running containers: SIGTERM (or the image's STOPSIGNAL), then SIGKILL after a grace period
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10)
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers
    Kill {
        /// The signal: KILL, TERM, SIGHUP, 9, …
        #[arg(short = 's', long = "signal", default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers again (their writable layer kept); with -a, wait and show their output
    Start {
        /// Attach: wait for the container, with its output on ours (and its exit code)
        #[arg(short, long)]
        attach: bool,
        /// Attach stdin too (implies -a)
        #[arg(short, long)]
        interactive: bool,
        #[command(flatten)]
        extension: E::StartArgs,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers (a running one only with -f, which kills it first)
    Rm {
        /// Kill a running container, then remove it
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        extension: E::RmArgs,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove all stopped containers
    Prune {
        /// Do not ask (this engine never asks)
        #[arg(short, long)]
        force: bool,
    },
    /// Run a command in a running container (joins its namespaces)
    Exec {
        /// Set an environment variable (KEY=VALUE)
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The working directory inside the container
        #[arg(short = 'w', long = "workdir", value_name = "DIR")]
        workdir: Option<String>,
        /// Run as this user (default: the container's)
        #[arg(short = 'u', long = "user")]
        user: Option<String>,
        /// Keep stdin attached (otherwise /dev/null)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Allocate a pseudo-terminal (with -i: an interactive shell)
        #[arg(short = 't', long)]
        tty: bool,
        container: String,
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// `run [OPTIONS] IMAGE [COMMAND [ARG...]]`, with docker's flags and an
/// extension's (`X`).
#[derive(Args, Clone, Debug)]
pub struct RunArgs<X: Args = NoArgs> {
    /// Remove the container (writable layer included) when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background under a monitor; print the container's ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// A name for the container (unique)
    #[arg(long)]
    pub name: Option<String>,
    /// The container's hostname (default: the first 12 hex digits of its ID)
    #[arg(short = 'h', long)]
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
    #[command(flatten)]
    pub terminal: crate::pty::TerminalArgs,
    #[command(flatten)]
    pub resources: crate::cgroups::ResourceArgs,
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
    /// The signal `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits for the container before SIGKILL (default 10)
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// A later chapter's flags (see `extension`).
    #[command(flatten)]
    pub extension: X,
    /// Print help (`-h` is --hostname, as with docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
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
  ch03-run run --name box -e GREETING=hi -w /tmp --user 1000:1000 localhost:5000/busybox id
  ch03-run start -a box                      # the same container again, on the writable layer it kept
  ch03-run run -d --name web localhost:5000/busybox sh -c 'while true; do date; sleep 1; done'
  ch03-run ps && ch03-run logs -f web        # Ctrl-C stops following, not the container
  ch03-run --explain exec web ps             # nsenter into its namespaces
  ch03-run stop -t 2 web && ch03-run rm web  # SIGTERM, SIGKILL after 2 s, then remove";

/// The name of a command, for error messages.
pub fn command_name<E: Extension>(command: &RunCommand<E>) -> &'static str {
    match command {
        RunCommand::Run(_) => "run",
        RunCommand::Create(_) => "create",
        RunCommand::Ps { .. } => "ps",
        RunCommand::Logs { .. } => "logs",
        RunCommand::Stop { .. } => "stop",
        RunCommand::Kill { .. } => "kill",
        RunCommand::Start { .. } => "start",
        RunCommand::Rm { .. } => "rm",
        RunCommand::Prune { .. } => "prune",
        RunCommand::Exec { .. } => "exec",
    }
}

/// Runs a container command; returns the exit code `run` must exit with.
pub fn run_run_command<E: Extension>(
    command: RunCommand<E>,
    globals: &GlobalArgs,
    extension: &E,
) -> Result<i32> {
    match command {
        RunCommand::Run(args) => run(*args, globals, extension),
        RunCommand::Create(args) => {
            if args.detach {
                return Err(Error::new(
                    "create never starts the container, so -d means nothing here: start it with start (detached) or start -a",
                ));
            }
            let container = create(*args, globals, extension)?;
            println!("{}", container.config.id);
            Ok(0)
        }
        RunCommand::Ps {
            all,
            quiet,
            no_trunc,
        } => {
            let table = ps::ps_table(&globals.root, all, quiet, no_trunc, extension);
            print!("{table}");
            Ok(0)
        }
        RunCommand::Logs { follow, container } => {
            logs::logs(&globals.root, &container, follow)?;
            Ok(0)
        }
        RunCommand::Stop { time, containers } => {
            Ok(each_in_parallel("stop", &containers, |name| {
                stop::stop(&globals.root, name, time)
            }))
        }
        RunCommand::Kill { signal, containers } => {
            let signal = stop::parse_signal(&signal)?;
            Ok(each_in_parallel("kill", &containers, |name| {
                stop::kill(&globals.root, name, signal)
            }))
        }
        RunCommand::Start {
            attach,
            interactive,
            extension: args,
            containers,
        } => {
            if attach || interactive {
                let [name] = containers.as_slice() else {
                    return Err(Error::new(
                        "you cannot start and attach multiple containers at once",
                    ));
                };
                return start_attached(globals, name, interactive, extension, &args);
            }
            Ok(each("start", &containers, |name| {
                start_detached(globals, name, extension, &args)
            }))
        }
        RunCommand::Rm {
            force,
            extension: args,
            containers,
        } => Ok(each_in_parallel("rm", &containers, |name| {
            remove::remove(&globals.root, name, force, extension, &args)
        })),
        RunCommand::Prune { force: _ } => remove::prune(&globals.root, extension),
        RunCommand::Exec {
            env,
            workdir,
            user,
            interactive,
            tty,
            container,
            command,
        } => {
            let found = find(&globals.root, &container)?;
            let options = ExecOptions {
                env,
                workdir,
                user,
                stdin: interactive,
                tty,
            };
            exec::exec(&found, &options, &command)
        }
    }
}

// ANCHOR: run
/// `run` = pull if missing + create + start + wait (+ delete with `--rm`).
/// Detached (`-d`), a monitor process waits instead of us (see `monitor`).
pub fn run<E: Extension>(
    args: RunArgs<E::RunArgs>,
    globals: &GlobalArgs,
    extension: &E,
) -> Result<i32> {
    let detach = args.detach;
    let mut container = create(args, globals, extension)?;
    let started = extension.before_start(&E::StartArgs::default(), &mut container);
    if let Err(e) = started {
        // As when starting fails: the container stays "created", or goes with --rm.
        if container.config.auto_remove {
            let _ = remove::delete(container, extension);
        }
        return Err(e);
    }
    if detach {
        // The monitor waits instead of us; the ID is all we print.
        let id = container.config.id.clone();
        monitor::start_detached(container, extension)?;
        println!("{id}");
        return Ok(0);
    }
    in_foreground(container, extension)
}

/// Starts the container and waits for it here; its exit code becomes
/// ours. With `--rm` it is removed afterwards, even when starting failed:
/// `--rm` leaves nothing behind.
fn in_foreground<E: Extension>(container: Container, extension: &E) -> Result<i32> {
    let mut hooks = ExtensionHooks {
        extension,
        container: &container,
    };
    let result = lifecycle::start(&container, &mut hooks)
        .and_then(|spawned| lifecycle::wait(&container, spawned, &mut hooks));
    if container.config.auto_remove {
        let removed = remove::delete(container, extension);
        let code = result?;
        removed?;
        return Ok(code);
    }
    result
}
// ANCHOR_END: run

/// `create`: the first half of `run`: the image (pulled if missing) and
/// the container made from it, not started (`start` does that).
fn create<E: Extension>(
    args: RunArgs<E::RunArgs>,
    globals: &GlobalArgs,
    extension: &E,
) -> Result<Container> {
    if let Some(signal) = &args.stop_signal {
        stop::parse_signal(signal)?;
    }
    // Checked before the image is pulled: a refused run makes nothing.
    if let Some(hostname) = &args.hostname {
        crate::etc::check_hostname(hostname)?;
    }
    let security = args.security.security()?;
    let resources = args.resources.parse()?;
    let store = globals.store()?;
    // Pulling uses threads; they are all joined when it returns, before
    // any namespace work (which needs a single-threaded process).
    let image = image_or_pull(globals, &store, &args.image).map_err(|e| match e.kind() {
        ErrorKind::ImageRemoved => crate::create::image_removed(&args.image),
        _ => e,
    })?;
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
        tty: args.terminal.tty,
        init: args.terminal.init,
        resources,
        security,
        auto_remove: args.rm,
        detach: args.detach,
        stop_signal: args.stop_signal,
        stop_timeout: args.stop_timeout,
    };
    crate::create::create(
        &globals.root,
        &store,
        &image,
        &args.image,
        &options,
        extension,
        &args.extension,
    )
}

// ANCHOR: start
/// `start NAME`: a stopped container runs again under a monitor, as with
/// `run -d`. A running one is left alone.
fn start_detached<E: Extension>(
    globals: &GlobalArgs,
    name: &str,
    extension: &E,
    args: &E::StartArgs,
) -> Result<()> {
    let found = find(&globals.root, name)?;
    if effective_state(&found.dir).is_running() {
        return Ok(());
    }
    let mut container = lifecycle::reopen(&globals.root, &globals.store()?, &found)?;
    container.config.spec.process.die_with_parent = false;
    extension.before_start(args, &mut container)?;
    monitor::start_detached(container, extension)
}

/// `start -a [-i] NAME`: runs it again in the foreground, as `run`
/// without `-d` does; its exit code becomes ours.
fn start_attached<E: Extension>(
    globals: &GlobalArgs,
    name: &str,
    stdin: bool,
    extension: &E,
    args: &E::StartArgs,
) -> Result<i32> {
    let found = find(&globals.root, name)?;
    if effective_state(&found.dir).is_running() {
        return Err(Error::new(format!(
            "container {name} is already running: use exec to run something else in it, or logs -f to follow it"
        ))
        .with_exit_code(1));
    }
    let mut container = lifecycle::reopen(&globals.root, &globals.store()?, &found)?;
    container.config.spec.process.die_with_parent = true;
    container.config.spec.process.stdin |= stdin;
    extension.before_start(args, &mut container)?;
    // `create --rm`: removed once it has run, as with run --rm.
    in_foreground(container, extension)
}
// ANCHOR_END: start

// ANCHOR: container_commands
/// Runs `action` on each named container as docker does: prints the name
/// as typed when it worked, one error line when not, and exits 1 if any failed.
fn each(command: &str, names: &[String], mut action: impl FnMut(&str) -> Result<()>) -> i32 {
    let mut code = 0;
    for name in names {
        code = code.max(report(command, name, action(name)));
    }
    code
}

/// The name as typed when it worked, one error line when not; 1 if not.
fn report(command: &str, name: &str, result: Result<()>) -> i32 {
    match result {
        Ok(()) => {
            println!("{name}");
            0
        }
        Err(e) => {
            eprintln!("{command}: {e}");
            1
        }
    }
}

/// At most this many containers are handled at once (docker's CLI too
/// bounds its parallel operations).
const PARALLEL: usize = 50;

/// [`each`], with the containers handled at the same time, as docker's
/// `stop`, `kill` and `rm` do: ten containers that ignore SIGTERM stop in
/// one grace period, not ten. Threads are fine here: these commands only
/// signal, wait and delete; none forks into namespaces (`start` does, so
/// it goes one by one). The output is still in the order typed: a result
/// is printed once every name before it has been.
fn each_in_parallel(
    command: &str,
    names: &[String],
    action: impl Fn(&str) -> Result<()> + Sync,
) -> i32 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (done, results) = std::sync::mpsc::channel();
    let mut code = 0;
    std::thread::scope(|scope| {
        for _ in 0..names.len().min(PARALLEL) {
            let (done, next, action) = (done.clone(), &next, &action);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                if done.send((i, action(name))).is_err() {
                    break;
                }
            });
        }
        drop(done);
        let mut pending: Vec<Option<Result<()>>> = names.iter().map(|_| None).collect();
        let mut printed = 0;
        for (i, result) in results {
            pending[i] = Some(result);
            while let Some(result) = pending.get_mut(printed).and_then(Option::take) {
                code = code.max(report(command, &names[printed], result));
                printed += 1;
            }
        }
    });
    code
}
// ANCHOR_END: container_commands

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
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
        let Command::Run(RunCommand::Run(args)) = cli.command else {
            panic!("not run")
        };
        assert!(args.rm);
        assert_eq!(args.env, ["A=1"]);
        assert_eq!(args.image, "img");
        assert_eq!(args.command, ["sh", "-c", "echo -n hi", "--rm"]);
    }
}
