//! What `/proc` tells about a process: the kernel's view, as text files.
//!
//! `/proc/PID/stat` holds a process's state, parent and start time (the
//! start time tells a PID from a later process that reused it), and
//! `/proc/self/task` holds one directory per thread.

/// How many threads this process has (from /proc/self/task).
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// The fields of `/proc/PID/stat` after the command name ("PID (comm) S
/// ppid …"; the name may hold spaces and parentheses, so the fields are
/// what follows the *last* ')'). Field N of proc(5) is at index N - 3.
pub fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}
