//! Errors of the parser: one line, `FILE:LINE: what is wrong (a hint)`.
//!
//! A learner fixing a Dockerfile needs to know *where* to look first, so
//! every error carries the file name and the line where the instruction
//! starts, like a compiler does.

use std::fmt;

/// A Dockerfile that cannot be read, with the place to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file name as the user gave it (`app.dockerfile`).
    pub file: String,
    /// 1-based line where the faulty instruction starts.
    pub line: usize,
    /// What is wrong, with a hint when there is one.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}
