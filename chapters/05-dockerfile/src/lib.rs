//! # Chapter 05: the Dockerfile
//!
//! A Dockerfile is not YAML and not a shell script: it is its own small,
//! line-oriented language. This crate reads it exactly as docker's builder
//! (buildkit) does, and is measured against buildkit's own test data.
//!
//! This first slice is the **parser**. Reading order:
//!
//! 1. [`directive`]: `# syntax=` and `# escape=` at the very top of the file.
//! 2. [`parser`]: physical lines become instructions (comments, continuations,
//!    flags, exec form versus shell form).
//! 3. [`instruction`]: the typed result, with its line number, and buildkit's
//!    s-expression dump used to compare with the reference.
//! 4. [`expand`]: docker's variable substitution (`$x`, `${x:-default}`, …)
//!    and its word splitting, applied later by the builder.
//! 5. [`heredoc`]: `RUN <<EOF` … `EOF`, scripts and files inside the
//!    Dockerfile.
//! 6. [`error`]: one-line errors naming the file and the line.

pub mod directive;
pub mod error;
pub mod expand;
pub mod heredoc;
pub mod instruction;
pub mod parser;

pub use error::ParseError;
pub use heredoc::Heredoc;
pub use instruction::{Args, Flag, Instruction, Keyword, Pair, PairForm};
pub use parser::{parse, Dockerfile};
