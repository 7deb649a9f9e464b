//! `parse [--sexp] FILE`: how the builder reads a Dockerfile, shown.
//!
//! Without `--sexp` it prints each stage and its instructions with their
//! line numbers, flags and arguments after variable substitution (with
//! the ARG and ENV values the file itself gives: the base image's ENV is
//! not known without pulling it). With `--sexp` it prints buildkit's
//! s-expression dump, the format buildkit's parser tests compare with.

use crate::expand::Lexer;
use crate::instruction::{Args, Instruction, Keyword};
use crate::scope::Scope;
use ch01_images::error::{Error, Result};
use std::path::Path;

// ANCHOR: parse_command
/// `parse`: prints the file as read; a file that cannot be read is the
/// same one-line error `build` would give.
pub fn parse_command(file: &Path, sexp: bool, build_args: &[String]) -> Result<i32> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::new(format!("cannot read {name}: {e}")))?;
    let dockerfile = crate::parse(&name, &text).map_err(|e| Error::new(e.to_string()))?;
    for warning in &dockerfile.warnings {
        eprintln!("warning: {warning}");
    }
    if sexp {
        print!("{}", dockerfile.sexp());
        return Ok(0);
    }
    let plan = crate::stage::plan(&name, &dockerfile).map_err(|e| Error::new(e.to_string()))?;
    let lexer = Lexer::new(dockerfile.directives.escape);
    let mut scope = Scope::new(build_args).map_err(Error::new)?;
    let fail = |i: &Instruction, e: crate::expand::ExpandError| {
        Error::new(format!("{name}:{}: {e}", i.line))
    };
    if let Some(syntax) = &dockerfile.directives.syntax {
        println!("# syntax={syntax} (a frontend image: this engine has its own parser)");
    }
    for arg in &plan.global_args {
        for word in words(arg) {
            scope
                .declare_global(&word, &lexer)
                .map_err(|e| fail(arg, e))?;
        }
        println!(
            "{:>4}  {}   (global: FROM lines only)",
            arg.line,
            arg.original.trim()
        );
    }
    for stage in &plan.stages {
        scope.start_stage();
        let base = lexer
            .expand_word(&stage.base, &scope.global_env())
            .map_err(|e| fail(&stage.from, e))?;
        println!();
        println!("stage {}: FROM {base}", stage.label());
        let mut env: Vec<String> = Vec::new();
        for instruction in &stage.instructions {
            let vars = scope.stage_env(&env);
            let shown = match (&instruction.keyword, &instruction.args) {
                (Keyword::Arg, Args::Words(words)) => {
                    for word in words {
                        scope
                            .declare(word, &lexer, &vars)
                            .map_err(|e| fail(instruction, e))?;
                    }
                    instruction.original.trim().to_string()
                }
                (Keyword::Env, Args::Pairs(pairs)) => {
                    let mut shown = Vec::new();
                    for pair in pairs {
                        let value = lexer
                            .expand_word(&pair.value, &vars)
                            .map_err(|e| fail(instruction, e))?;
                        shown.push(format!("{}={value:?}", pair.key));
                        env.retain(|l| l.split_once('=').map(|p| p.0) != Some(pair.key.as_str()));
                        env.push(format!("{}={value}", pair.key));
                    }
                    format!("ENV {}", shown.join(" "))
                }
                (keyword, Args::Words(words)) if substitutes(*keyword) => {
                    let mut out = Vec::new();
                    for word in words {
                        out.push(
                            lexer
                                .expand_word(word, &vars)
                                .map_err(|e| fail(instruction, e))?,
                        );
                    }
                    format!("{keyword}{} {}", flags(instruction), out.join(" "))
                }
                (keyword, Args::Text(text)) if substitutes(*keyword) => {
                    let value = lexer
                        .expand_word(text, &vars)
                        .map_err(|e| fail(instruction, e))?;
                    format!("{keyword} {value}")
                }
                (keyword, Args::Exec(items)) => {
                    format!("{keyword}{} {items:?}   (exec form)", flags(instruction))
                }
                (keyword, Args::Shell(text)) => format!(
                    "{keyword}{} {text}   (shell form: /bin/sh -c)",
                    flags(instruction)
                ),
                _ => instruction.original.trim().to_string(),
            };
            println!("{:>4}  {shown}", instruction.line);
            for heredoc in &instruction.heredocs {
                println!(
                    "        <<{} ({} lines)",
                    heredoc.name,
                    heredoc.content.lines().count()
                );
            }
        }
    }
    Ok(0)
}
// ANCHOR_END: parse_command

/// The instructions whose arguments the builder substitutes variables in.
pub fn substitutes(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::Add
            | Keyword::Copy
            | Keyword::Env
            | Keyword::Expose
            | Keyword::From
            | Keyword::Label
            | Keyword::Stopsignal
            | Keyword::User
            | Keyword::Volume
            | Keyword::Workdir
            | Keyword::Arg
    )
}

fn flags(instruction: &Instruction) -> String {
    instruction.flags.iter().map(|f| format!(" {f}")).collect()
}

fn words(instruction: &Instruction) -> Vec<String> {
    match &instruction.args {
        Args::Words(words) => words.clone(),
        _ => Vec::new(),
    }
}
