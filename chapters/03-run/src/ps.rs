//! `ps`: the containers and where each is in its life, in docker's
//! columns (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES).
//!
//! The STATUS is computed, not stored: a "running" container whose PID 1
//! is gone is shown exited (see `lifecycle::effective_state`).

use crate::lifecycle;
use ch01_images::table::{human_duration, render};
use std::path::Path;

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
        // Its creation was interrupted, or a file of it was deleted.
        "dead" => "Dead".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(status_text(&state("dead", None), 0), "Dead");
    }
}
