//! The command line of chapter 03: `run`, and the commands that manage
//! containers afterwards: `ps`, `logs`, `stop`, `kill`, `rm`, `prune`,
//! `exec` (and `inspect`, which looks for a container before an image).
//! [`RunCommand`] is flattened
//! after chapter 1's `ImageCommand` and chapter 2's `LayerCommand` in this
//! chapter's binary, as chapter 2 does with chapter 1's.

use crate::exec::{self, ExecOptions};
use crate::lifecycle::{self, CreateOptions, Found};
use crate::monitor;
use crate::process::NarrateHooks;
use crate::spec::Overrides;
use ch01_images::cli::GlobalArgs;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use ch01_images::pull::{pull, PullOptions};
use ch01_images::reference::Reference;
use ch01_images::store::{Image, Store};
use ch01_images::table::{human_duration, human_size, render};
use clap::{Args, Subcommand};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

// ANCHOR: commands
/// The container commands (chapter 03).
#[derive(Subcommand, Clone, Debug)]
pub enum RunCommand {
    /// Create and start a container from an image (pulled first if missing), and wait for it
    Run(RunArgs),
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
    /// Stop running containers: SIGTERM, then SIGKILL after a grace period
    Stop {
        /// Seconds to wait before SIGKILL
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
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
    /// Remove containers (a running one only with -f, which kills it first)
    Rm {
        /// Kill a running container, then remove it
        #[arg(short, long)]
        force: bool,
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

/// `run [OPTIONS] IMAGE [COMMAND [ARG...]]`, with docker's flags.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
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
    #[command(flatten)]
    pub terminal: crate::pty::TerminalArgs,
    #[command(flatten)]
    pub resources: crate::cgroups::ResourceArgs,
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
  ch03-run run -d --name web localhost:5000/busybox sh -c 'while true; do date; sleep 1; done'
  ch03-run ps && ch03-run logs -f web        # Ctrl-C stops following, not the container
  ch03-run --explain exec web ps             # nsenter into its namespaces
  ch03-run stop -t 2 web && ch03-run rm web  # SIGTERM, SIGKILL after 2 s, then remove";

/// The name of a command, for error messages.
pub fn command_name(command: &RunCommand) -> &'static str {
    match command {
        RunCommand::Run(_) => "run",
        RunCommand::Ps { .. } => "ps",
        RunCommand::Logs { .. } => "logs",
        RunCommand::Stop { .. } => "stop",
        RunCommand::Kill { .. } => "kill",
        RunCommand::Rm { .. } => "rm",
        RunCommand::Prune { .. } => "prune",
        RunCommand::Exec { .. } => "exec",
    }
}

/// Runs a container command; returns the exit code `run` must exit with.
pub fn run_run_command(command: RunCommand, globals: &GlobalArgs) -> Result<i32> {
    match command {
        RunCommand::Run(args) => run(args, globals),
        RunCommand::Ps {
            all,
            quiet,
            no_trunc,
        } => {
            print!("{}", ps_table(&globals.root, all, quiet, no_trunc));
            Ok(0)
        }
        RunCommand::Logs { follow, container } => {
            logs(&globals.root, &container, follow)?;
            Ok(0)
        }
        RunCommand::Stop { time, containers } => Ok(each("stop", &containers, |name| {
            stop(&globals.root, name, time)
        })),
        RunCommand::Kill { signal, containers } => {
            let signal = parse_signal(&signal)?;
            Ok(each("kill", &containers, |name| {
                kill(&globals.root, name, signal)
            }))
        }
        RunCommand::Rm { force, containers } => Ok(each("rm", &containers, |name| {
            remove(&globals.root, name, force)
        })),
        RunCommand::Prune { force: _ } => prune(&globals.root),
        RunCommand::Exec {
            env,
            workdir,
            user,
            interactive,
            tty,
            container,
            command,
        } => {
            let found = lifecycle::find(&globals.root, &container)?;
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
        tty: args.terminal.tty,
        init: args.terminal.init,
        resources: args.resources,
        auto_remove: args.rm,
    };
    let container = lifecycle::create(&globals.root, &store, &image, &args.image, &options)?;
    if args.detach {
        // The monitor waits instead of us; the ID is all we print.
        let id = container.config.id.clone();
        monitor::start_detached(container)?;
        println!("{id}");
        return Ok(0);
    }
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

// ANCHOR: container_commands
/// Runs `action` on each named container as docker does: prints the name
/// as typed when it worked, one error line when not, and exits 1 if any failed.
fn each(command: &str, names: &[String], mut action: impl FnMut(&str) -> Result<()>) -> i32 {
    let mut code = 0;
    for name in names {
        match action(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("{command}: {e}");
                code = 1;
            }
        }
    }
    code
}

/// docker's ps COMMAND column: arguments with spaces in single quotes,
/// the whole cut to 20 characters with "…", in double quotes.
pub fn quoted_command(args: &[String], no_trunc: bool) -> String {
    let command = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if no_trunc || command.chars().count() <= 20 {
        return format!("\"{command}\"");
    }
    let cut: String = command.chars().take(19).collect();
    format!("\"{cut}…\"")
}

/// docker's ps STATUS column.
pub fn status_text(state: &lifecycle::State, now: u64) -> String {
    let since = |t: Option<u64>| human_duration(now.saturating_sub(t.unwrap_or(now)));
    match state.status.as_str() {
        "running" => format!("Up {}", since(state.started)),
        "exited" => format!(
            "Exited ({}) {} ago",
            state.exit_code.unwrap_or(0),
            since(state.finished)
        ),
        "created" => "Created".into(),
        other => other.to_string(),
    }
}

/// `ps`: CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES,
/// newest first.
pub fn ps_table(root: &Path, all: bool, quiet: bool, no_trunc: bool) -> String {
    let now = lifecycle::now();
    let mut containers: Vec<(lifecycle::Config, lifecycle::State)> = lifecycle::list(root)
        .into_iter()
        .map(|c| {
            let state = lifecycle::effective_state(&lifecycle::containers_dir(root).join(&c.id));
            (c, state)
        })
        .filter(|(_, s)| all || s.status == "running")
        .collect();
    containers.sort_by_key(|c| std::cmp::Reverse(c.0.created));
    let id = |c: &lifecycle::Config| {
        if no_trunc {
            c.id.clone()
        } else {
            c.id[..12].to_string()
        }
    };
    if quiet {
        return containers.iter().map(|(c, _)| id(c) + "\n").collect();
    }
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|(c, s)| {
            vec![
                id(c),
                c.image.clone(),
                quoted_command(&c.spec.process.args, no_trunc),
                format!("{} ago", human_duration(now.saturating_sub(c.created))),
                status_text(s, now),
                String::new(),
                c.name.clone(),
            ]
        })
        .collect();
    render(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    )
}

/// `logs [-f]`: the container's stdout and stderr from its json-file log,
/// each to where it came from.
pub fn logs(root: &Path, name: &str, follow: bool) -> Result<()> {
    let found = lifecycle::find(root, name)?;
    let path = monitor::log_path(&found.dir, &found.config.id);
    let mut offset = 0u64;
    loop {
        // Checked before reading: once it has exited, the log is complete.
        let running = follow && lifecycle::effective_state(&found.dir).status == "running";
        offset = print_log_from(&path, offset)?;
        if !running {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Prints the complete log lines after `offset`; returns the new offset.
fn print_log_from(path: &Path, offset: u64) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(offset);
    };
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::new(format!("reading {}: {e}", path.display())))?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for line in bytes[..complete].split(|b| *b == b'\n') {
        let Ok(entry) = serde_json::from_slice::<monitor::Entry>(line) else {
            continue;
        };
        let _ = if entry.stream == "stderr" {
            err.write_all(entry.log.as_bytes())
        } else {
            out.write_all(entry.log.as_bytes())
        };
    }
    let _ = out.flush();
    Ok(offset + complete as u64)
}

/// Waits up to `limit` for a process to be gone; true if it is.
fn wait_gone(pid: Option<i32>, start: Option<u64>, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while lifecycle::alive(pid, start) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Sends `signal` to the container's PID 1, narrated.
fn signal_pid1(found: &Found, state: &lifecycle::State, signal: Signal) -> Result<()> {
    let pid = state.pid.unwrap_or_default();
    explain::step(
        &format!("send {signal} to the container's PID 1 ({pid} on the host)",),
        Some(&format!(
            "kill -{} {pid}",
            signal.as_str().trim_start_matches("SIG")
        )),
    );
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(|e| {
        Error::new(format!("cannot kill container {}: {e}", found.config.id)).with_exit_code(1)
    })
}

/// After PID 1 is gone: lets a live monitor record the exit (and unmount)
/// before we go on.
fn wait_for_monitor(found: &Found) {
    let state = lifecycle::read_state(&found.dir).unwrap_or_default();
    if state.monitor_pid.is_some() {
        wait_gone(
            state.monitor_pid,
            state.monitor_start,
            std::time::Duration::from_secs(10),
        );
        return;
    }
    // A foreground `run` records the exit itself: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lifecycle::read_state(&found.dir).is_ok_and(|s| s.status == "running")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `stop`: SIGTERM, up to `time` seconds for PID 1 to exit, then SIGKILL.
pub fn stop(root: &Path, name: &str, time: u64) -> Result<()> {
    let found = lifecycle::find(root, name)?;
    let state = lifecycle::effective_state(&found.dir);
    if state.status != "running" {
        return Ok(());
    }
    signal_pid1(&found, &state, Signal::SIGTERM)?;
    let grace = std::time::Duration::from_secs(time);
    let mut code = 255;
    if !wait_gone(state.pid, state.pid_start, grace) {
        explain::step(&format!("still running after {time}s: kill it"), None);
        signal_pid1(&found, &state, Signal::SIGKILL)?;
        code = 137;
        wait_gone(
            state.pid,
            state.pid_start,
            std::time::Duration::from_secs(10),
        );
    }
    wait_for_monitor(&found);
    record_without_monitor(&found, code)
}

/// When no monitor is left to record the exit (it was killed), the
/// engine does: "exited" (137 after SIGKILL; 255, unknown, otherwise),
/// and the root filesystem unmounted.
fn record_without_monitor(found: &Found, code: i32) -> Result<()> {
    let state = lifecycle::read_state(&found.dir).unwrap_or_default();
    if state.status != "running"
        || state.monitor_pid.is_none()
        || lifecycle::alive(state.monitor_pid, state.monitor_start)
    {
        return Ok(());
    }
    let merged = found.dir.join("merged");
    if ch02_layers::overlay::is_mounted(&merged) {
        ch02_layers::overlay::unmount(&merged)?;
    }
    lifecycle::update_state(&found.dir, |s| {
        s.status = "exited".into();
        s.exit_code = Some(code);
        s.finished = Some(lifecycle::now());
        s.pid = None;
        s.pid_start = None;
    })?;
    Ok(())
}

/// `kill -s SIGNAL`.
pub fn kill(root: &Path, name: &str, signal: Signal) -> Result<()> {
    let found = lifecycle::find(root, name)?;
    let state = lifecycle::effective_state(&found.dir);
    if state.status != "running" {
        return Err(Error::new(format!(
            "cannot kill container: {name}: container {} is not running",
            found.config.id
        ))
        .with_exit_code(1));
    }
    signal_pid1(&found, &state, signal)
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(text: &str) -> Result<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::new(format!("invalid signal: {text}")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse()
        .map_err(|_| Error::new(format!("invalid signal: {text}")))
}

/// `rm [-f]`: a running container only with `-f`, which kills it first;
/// then everything of it goes, even when its monitor was killed.
pub fn remove(root: &Path, name: &str, force: bool) -> Result<()> {
    let found = lifecycle::find(root, name)?;
    let state = lifecycle::effective_state(&found.dir);
    if state.status == "running" {
        if !force {
            return Err(Error::new(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                found.config.name
            ))
            .with_exit_code(1));
        }
        // Killing PID 1 kills every process of its PID namespace.
        signal_pid1(&found, &state, Signal::SIGKILL)?;
        wait_gone(
            state.pid,
            state.pid_start,
            std::time::Duration::from_secs(10),
        );
    }
    wait_for_monitor(&found);
    if found.dir.exists() {
        lifecycle::remove_from_disk(root, &found)?;
    }
    Ok(())
}

/// `prune`: removes every container that is not running.
pub fn prune(root: &Path) -> Result<i32> {
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for config in lifecycle::list(root) {
        let dir = lifecycle::containers_dir(root).join(&config.id);
        let state = lifecycle::effective_state(&dir);
        // A live monitor is still finishing (or removing) this one.
        if state.status == "running" || lifecycle::alive(state.monitor_pid, state.monitor_start) {
            continue;
        }
        reclaimed += dir_size(&dir.join("upper"));
        let id = config.id.clone();
        lifecycle::remove_from_disk(root, &Found { dir, config })?;
        deleted.push(id);
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

/// `inspect NAME…`: a container when one has that name or ID, otherwise
/// an image, as docker does. Returns the exit code (1 if any was missing).
pub fn inspect(globals: &GlobalArgs, names: &[String]) -> Result<i32> {
    let store = globals.store()?;
    let mut found = Vec::new();
    let mut code = 0;
    for name in names {
        if let Ok(container) = lifecycle::find(&globals.root, name) {
            found.push(container_json(&container));
        } else if let Ok(image) = store.get(name) {
            found.push(ch01_images::cli::inspect_json(&store, &image));
        } else {
            eprintln!("inspect: No such object: {name}");
            code = 1;
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&found).expect("JSON values serialize")
    );
    Ok(code)
}

/// The fields of `docker container inspect` this engine knows.
pub fn container_json(found: &Found) -> serde_json::Value {
    let config = &found.config;
    let state = lifecycle::effective_state(&found.dir);
    let process = &config.spec.process;
    let time = |t: Option<u64>| t.map_or("0001-01-01T00:00:00Z".to_string(), monitor::rfc3339);
    let running = state.status == "running";
    serde_json::json!({
        "Id": config.id,
        "Created": monitor::rfc3339(config.created),
        "Path": process.args.first(),
        "Args": process.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": state.status,
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "Dead": false,
            "Pid": if running { state.pid.unwrap_or(0) } else { 0 },
            "ExitCode": state.exit_code.unwrap_or(0),
            "StartedAt": time(state.started),
            "FinishedAt": time(state.finished),
        },
        "Image": config.image_id,
        "LogPath": monitor::log_path(&found.dir, &config.id),
        "Name": format!("/{}", config.name),
        "Mounts": config.spec.mounts.iter()
            .filter(|m| m.fstype == "bind" && !m.destination.starts_with("/etc/"))
            .map(|m| serde_json::json!({
                "Type": "bind",
                "Source": m.source,
                "Destination": m.destination,
                "RW": !m.options.iter().any(|o| o == "ro"),
            }))
            .collect::<Vec<_>>(),
        "Config": {
            "Hostname": config.spec.hostname,
            "User": process.user,
            "Env": process.env,
            "Cmd": process.args,
            "Image": config.image,
            "WorkingDir": process.cwd,
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": found.dir.join("upper"),
                "WorkDir": found.dir.join("work"),
                "MergedDir": config.spec.rootfs,
            },
        },
    })
}
// ANCHOR_END: container_commands

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
    fn ps_columns_are_dockers() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            quoted_command(&words(&["sleep", "100"]), false),
            "\"sleep 100\""
        );
        assert_eq!(
            quoted_command(&words(&["sh", "-c", "echo hi; sleep 100"]), false),
            "\"sh -c 'echo hi; sle…\""
        );
        assert_eq!(
            quoted_command(&words(&["sh", "-c", "echo hi; sleep 100"]), true),
            "\"sh -c 'echo hi; sleep 100'\""
        );
        let state = |status: &str, code| lifecycle::State {
            status: status.into(),
            exit_code: code,
            started: Some(1000),
            finished: Some(1000),
            ..Default::default()
        };
        assert_eq!(status_text(&state("running", None), 1003), "Up 3 seconds");
        assert_eq!(
            status_text(&state("exited", Some(3)), 1000 + 120),
            "Exited (3) 2 minutes ago"
        );
        assert_eq!(status_text(&state("created", None), 0), "Created");
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE").is_err());
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
        let RunCommand::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.rm);
        assert_eq!(args.env, ["A=1"]);
        assert_eq!(args.image, "img");
        assert_eq!(args.command, ["sh", "-c", "echo -n hi", "--rm"]);
    }
}
