//! `--explain`: narrate what the engine does, as the shell command you could
//! type to do the same thing by hand.
//!
//! This is the workshop's signature. With `--explain` (or
//! `CRABBOX_EXPLAIN=1`) every HTTP request is shown as a `curl` command and
//! every write to the store as what it does on disk, so a learner sees that
//! a container engine is ordinary requests and files, not magic. Later
//! chapters narrate mounts, namespaces and network links the same way.
//! The narration goes to stderr, so it never mixes with a command's output.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns narration on for the rest of the process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Prints one narrated step: what happens and, when there is one, the
/// equivalent shell command.
pub fn step(what: &str, shell: Option<&str>) {
    if !enabled() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "[explain] {what}");
    if let Some(cmd) = shell {
        let _ = writeln!(err, "[explain]   $ {cmd}");
    }
}

/// Quotes a word for a POSIX shell, so shown commands can be pasted.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(super::shell_quote("https://x/v2/"), "https://x/v2/");
        assert_eq!(super::shell_quote("Accept: a, b"), "'Accept: a, b'");
        assert_eq!(super::shell_quote("it's"), r"'it'\''s'");
    }
}
