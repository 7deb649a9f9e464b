//! # Chapter 05: the Dockerfile
//!
//! A Dockerfile is not YAML and not a shell script: it is its own small,
//! line-oriented language. This crate reads it exactly as docker's builder
//! (buildkit) does, measured against buildkit's own test data, then builds
//! a real image from it: each filesystem step runs in a container over
//! the layers so far, and what it changed becomes a new layer.
//!
//! Reading order:
//!
//! 1. [`directive`]: `# syntax=` and `# escape=` at the very top of the file.
//! 2. [`parser`]: physical lines become instructions (comments, continuations,
//!    flags, exec form versus shell form).
//! 3. [`instruction`]: the typed result, with its line number, and buildkit's
//!    s-expression dump used to compare with the reference.
//! 4. [`expand`]: docker's variable substitution (`$x`, `${x:-default}`, …)
//!    and its word splitting.
//! 5. [`heredoc`]: `RUN <<EOF` … `EOF`, scripts and files inside the
//!    Dockerfile.
//! 6. [`error`]: one-line errors naming the file and the line.
//! 7. [`stage`]: a Dockerfile cut into stages; which ones a target needs.
//! 8. [`scope`]: which variables an instruction sees (ARG, ENV, `--build-arg`).
//! 9. [`ignore`] and [`context`]: what COPY may read, and how it is found.
//! 10. [`copy`]: COPY and ADD, docker's rules, into a stage's root filesystem.
//! 11. [`step`]: one filesystem step: a root filesystem, a change, a layer.
//! 12. [`cache`]: when a step can be skipped, and why.
//! 13. [`builder`]: the whole build, instruction by instruction.
//! 14. [`push`]: publishing an image to a registry.
//! 15. [`cli`]: the command line.

pub mod builder;
pub mod cache;
pub mod cli;
pub mod context;
pub mod copy;
pub mod directive;
pub mod error;
pub mod expand;
pub mod heredoc;
pub mod ignore;
pub mod instruction;
pub mod parser;
pub mod push;
pub mod scope;
pub mod show;
pub mod stage;
pub mod step;

pub use error::ParseError;
pub use heredoc::Heredoc;
pub use instruction::{Args, Flag, Instruction, Keyword, Pair, PairForm};
pub use parser::{parse, Dockerfile};
