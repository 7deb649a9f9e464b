//! Runs the book's "try it" transcripts, so the book never shows a command
//! whose output has drifted from what the code really prints.
//!
//! Format (`book/src/transcripts/*.console`): a line starting with `$ ` is
//! a command; the lines after it, up to the next command, are its expected
//! output (stdout and stderr merged). A line that is exactly `...` matches
//! any number of lines; `[..]` inside a line matches any text. All commands
//! run in one bash session, in order, so `echo $?` and variables work.

use std::process::Command;

pub struct Step {
    pub command: String,
    pub expected: Vec<String>,
}

pub fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in text.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: vec![],
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.trim_end().to_string());
        }
    }
    for step in &mut steps {
        while step.expected.last().is_some_and(|l| l.is_empty()) {
            step.expected.pop();
        }
    }
    steps
}

/// Does one line match a pattern with `[..]` wildcards?
pub fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let mut rest = line;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Does the output match the expected lines (with `...` and `[..]`)?
pub fn output_matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => {
            !actual.is_empty()
                && line_matches(first, actual[0])
                && output_matches(rest, &actual[1..])
        }
    }
}

/// Runs every step in one bash session and returns, per step, its output.
/// `prepare` is run first (exports, cd), `rewrite_command` adapts commands
/// to the test's environment, `rewrite_output` maps output back.
pub fn run(
    steps: &[Step],
    prepare: &str,
    rewrite_command: impl Fn(&str) -> String,
    rewrite_output: impl Fn(&str) -> String,
) -> Vec<String> {
    run_with(&[], steps, prepare, rewrite_command, rewrite_output)
}

/// Like [`run`], with the bash session started by `launcher` (e.g.
/// `["unshare", "--net"]`: a network namespace of its own, which dies
/// with the session).
pub fn run_with(
    launcher: &[&str],
    steps: &[Step],
    prepare: &str,
    rewrite_command: impl Fn(&str) -> String,
    rewrite_output: impl Fn(&str) -> String,
) -> Vec<String> {
    const MARK: &str = "@@crabbox-transcript-step@@";
    let mut script = String::from(prepare);
    script.push('\n');
    for step in steps {
        // Keep `$?` across the marker line, and merge stderr of the whole
        // command line (a `2>&1` after it would cover only its last part).
        script.push_str(&format!(
            "__rc=$?; echo {MARK}; (exit $__rc)\n{{ {}\n}} 2>&1\n",
            rewrite_command(&step.command)
        ));
    }
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg("bash");
            command
        }
        None => Command::new("bash"),
    };
    let out = command.arg("-c").arg(&script).output().expect("run bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut outputs: Vec<String> = text
        .split(&format!("{MARK}\n"))
        .skip(1)
        .map(&rewrite_output)
        .collect();
    outputs.resize(steps.len(), String::new());
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(line_matches("a [..] c", "a bbb c"));
        assert!(!line_matches("a [..] c", "a bbb d"));
        let exp: Vec<String> = vec!["x".into(), "...".into(), "z".into()];
        assert!(output_matches(&exp, &["x", "y", "y", "z"]));
        assert!(output_matches(&exp, &["x", "z"]));
        assert!(!output_matches(&exp, &["x", "y"]));
    }
}
