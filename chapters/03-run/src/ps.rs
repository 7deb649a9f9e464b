//! `ps`: the containers and where each is in its life, in docker's
//! columns (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES).
//!
//! The STATUS is computed, not stored: a "running" container whose PID 1
//! is gone is shown exited (see `state::effective_state`).

use crate::extension::Extension;
use crate::find::list;
use crate::record::{containers_dir, now, Config};
use crate::state::{effective_state, State, Status};
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

// ANCHOR: status_text
/// docker's ps STATUS column: its words for each [`Status`].
pub fn status_text(state: &State, now: u64) -> String {
    let since = |t: Option<u64>| human_duration(now.saturating_sub(t.unwrap_or(now)));
    match state.status {
        Status::Running => format!("Up {}", since(state.started)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            state.exit_code.unwrap_or(0),
            since(state.finished)
        ),
        Status::Created => "Created".into(),
        // Its creation was interrupted, or a file of it was deleted.
        Status::Dead => "Dead".into(),
    }
}
// ANCHOR_END: status_text

/// `ps`: CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES,
/// newest first. PORTS is `extension`'s (empty in this chapter).
pub fn ps_table(
    root: &Path,
    all: bool,
    quiet: bool,
    no_trunc: bool,
    extension: &impl Extension,
) -> String {
    let now = now();
    let mut containers: Vec<(Config, State)> = list(root)
        .into_iter()
        .map(|c| {
            let state = effective_state(&containers_dir(root).join(&c.id));
            (c, state)
        })
        .filter(|(_, s)| all || s.is_running())
        .collect();
    containers.sort_by_key(|c| std::cmp::Reverse(c.0.created));
    let id = |c: &Config| {
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
                extension.ports(c),
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
        let state = |status, code| State {
            status,
            exit_code: code,
            started: Some(1000),
            finished: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            status_text(&state(Status::Running, None), 1003),
            "Up 3 seconds"
        );
        assert_eq!(
            status_text(&state(Status::Exited, Some(3)), 1000 + 120),
            "Exited (3) 2 minutes ago"
        );
        assert_eq!(status_text(&state(Status::Created, None), 0), "Created");
        assert_eq!(status_text(&state(Status::Dead, None), 0), "Dead");
    }
}
