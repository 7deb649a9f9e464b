//! Stages: a Dockerfile cut at each `FROM`.
//!
//! ```dockerfile
//! ARG VERSION=1            # before the first FROM: for FROM lines only
//! FROM debian AS build     # stage 0, "build"
//! RUN make
//! FROM busybox             # stage 1, the last one: the image by default
//! COPY --from=build /out /app
//! ```
//!
//! Each stage starts from an image (or `scratch`, or an earlier stage) and
//! makes an image of its own; only the target stage's is kept and named.
//! A stage the target does not need, through `FROM` or `COPY --from`, is
//! not built at all: buildkit works out this graph before it starts, which
//! is why a multi-stage Dockerfile can hold a `test` stage that only
//! `--target test` builds.

use crate::error::ParseError;
use crate::instruction::{Args, Instruction, Keyword};
use crate::parser::Dockerfile;
use std::collections::BTreeSet;

/// One stage: its `FROM` and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// 0 for the first `FROM`.
    pub index: usize,
    /// The name after `AS`, in lower case (names are case-insensitive).
    pub name: Option<String>,
    /// The `FROM` instruction itself.
    pub from: Instruction,
    /// The image (or stage) it starts from, as written: variables are
    /// substituted later, with the ARGs declared before the first FROM.
    pub base: String,
    /// Everything up to the next `FROM`.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// `0 (build)` or `1`: how the output names a stage.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.index),
            None => self.index.to_string(),
        }
    }
}

/// A Dockerfile as the builder sees it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file name, for errors.
    pub file: String,
    /// The ARGs before the first FROM.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

// ANCHOR: plan
/// Cuts `dockerfile` into stages. Before the first `FROM` only `ARG` may
/// come; a file without `FROM` builds nothing.
pub fn plan(file: &str, dockerfile: &Dockerfile) -> Result<Plan, ParseError> {
    let error = |line: usize, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in &dockerfile.instructions {
        match (instruction.keyword, stages.last_mut()) {
            (Keyword::From, _) => {
                let (base, name) = from_arguments(instruction).map_err(|m| error(instruction.line, m))?;
                if let Some(name) = &name {
                    if let Some(other) = stages.iter().find(|s| s.name.as_ref() == Some(name)) {
                        return Err(error(
                            instruction.line,
                            format!(
                                "duplicate stage name {name:?}: line {} already uses it",
                                other.from.line
                            ),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    from: instruction.clone(),
                    base,
                    instructions: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.instructions.push(instruction.clone()),
            (Keyword::Arg, None) => global_args.push(instruction.clone()),
            (keyword, None) => {
                return Err(error(
                    instruction.line,
                    format!(
                        "{keyword} before the first FROM: a Dockerfile starts with FROM (only ARG may come before it)"
                    ),
                ))
            }
        }
    }
    if stages.is_empty() {
        let line = dockerfile.instructions.last().map_or(1, |i| i.end_line);
        return Err(error(
            line,
            "no FROM instruction: a Dockerfile needs at least one (FROM IMAGE, or FROM scratch)"
                .into(),
        ));
    }
    Ok(Plan {
        file: file.to_string(),
        global_args,
        stages,
    })
}
// ANCHOR_END: plan

/// `FROM [--platform=…] IMAGE [AS NAME]`.
fn from_arguments(from: &Instruction) -> Result<(String, Option<String>), String> {
    let words = match &from.args {
        Args::Words(words) => words.clone(),
        _ => Vec::new(),
    };
    match words.as_slice() {
        [base] => Ok((base.clone(), None)),
        [base, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(format!(
                    "invalid stage name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter"
                ));
            }
            Ok((base.clone(), Some(name.to_ascii_lowercase())))
        }
        _ => Err("FROM takes an image and an optional AS NAME (FROM IMAGE [AS NAME])".into()),
    }
}

impl Plan {
    /// The stage `--target` names (by name, case-insensitive), or the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, String> {
        let Some(target) = target else {
            return Ok(self.stages.len() - 1);
        };
        let wanted = target.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(wanted.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = self
                    .stages
                    .iter()
                    .filter_map(|s| s.name.as_deref())
                    .collect();
                format!(
                    "target stage {target:?} could not be found (the stages named in {} are: {})",
                    self.file,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// The earlier stage that `name` (a stage name, or a stage index for
    /// `COPY --from=0`) refers to from stage `current`. `Ok(None)`: it is
    /// an image. A stage defined at or after `current` is an error: a
    /// build cannot read a stage it has not made yet.
    pub fn stage_named(
        &self,
        name: &str,
        current: usize,
        line: usize,
    ) -> Result<Option<usize>, ParseError> {
        let wanted = name.to_ascii_lowercase();
        let found = match wanted.parse::<usize>() {
            Ok(index) if index < self.stages.len() => Some(index),
            Ok(_) => None,
            Err(_) => self
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(wanted.as_str())),
        };
        match found {
            Some(index) if index >= current => Err(ParseError {
                file: self.file.clone(),
                line,
                message: format!(
                    "stage {name:?} is used before it is defined (line {}): a stage can only use earlier stages",
                    self.stages[index].from.line
                ),
            }),
            other => Ok(other),
        }
    }

    // ANCHOR: needed
    /// The stages `target` needs: itself, and every stage it reaches
    /// through `FROM stage` or `COPY --from=stage`, recursively. `base_of`
    /// gives a stage's base after substitution.
    pub fn needed(
        &self,
        target: usize,
        base_of: &dyn Fn(&Stage) -> Result<String, ParseError>,
    ) -> Result<BTreeSet<usize>, ParseError> {
        let mut needed = BTreeSet::new();
        let mut to_visit = vec![target];
        while let Some(index) = to_visit.pop() {
            if !needed.insert(index) {
                continue;
            }
            let stage = &self.stages[index];
            let base = base_of(stage)?;
            if let Some(parent) = self.stage_named(&base, index, stage.from.line)? {
                to_visit.push(parent);
            }
            for instruction in &stage.instructions {
                if let Some(from) = copy_from(instruction) {
                    if let Some(source) = self.stage_named(from, index, instruction.line)? {
                        to_visit.push(source);
                    }
                }
            }
        }
        Ok(needed)
    }
    // ANCHOR_END: needed
}

/// The `--from=` of a COPY (or ADD), if any.
pub fn copy_from(instruction: &Instruction) -> Option<&str> {
    match instruction.keyword {
        Keyword::Copy | Keyword::Add => instruction.flag("from"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> Result<Plan, ParseError> {
        plan("Dockerfile", &crate::parse("Dockerfile", text).unwrap())
    }

    fn no_args(stage: &Stage) -> Result<String, ParseError> {
        Ok(stage.base.clone())
    }

    #[test]
    fn stages_names_and_what_a_target_needs() {
        let plan = plan_of(
            "ARG V=1\nFROM busybox AS Build\nRUN make\nFROM busybox AS test\nRUN test\n\
             FROM scratch\nCOPY --from=build /out /\n",
        )
        .unwrap();
        assert_eq!(plan.global_args.len(), 1);
        assert_eq!(plan.stages.len(), 3);
        assert_eq!(plan.stages[0].name.as_deref(), Some("build"));
        let last = plan.target(None).unwrap();
        assert_eq!(last, 2);
        let needed = plan.needed(last, &no_args).unwrap();
        assert_eq!(needed.into_iter().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(plan.target(Some("TEST")).unwrap(), 1);
        assert!(plan
            .target(Some("nope"))
            .unwrap_err()
            .contains("could not be found"));
    }

    #[test]
    fn mistakes_are_refused_with_their_line() {
        let e = plan_of("RUN true\nFROM busybox\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("before the first FROM"), "{e}");
        let e = plan_of("ARG x\n").unwrap_err();
        assert!(e.message.contains("no FROM"), "{e}");
        let e = plan_of("FROM a AS x\nFROM b AS X\n").unwrap_err();
        assert_eq!(e.line, 2);
        let plan = plan_of("FROM a\nCOPY --from=later / /\nFROM b AS later\n").unwrap();
        let e = plan.needed(0, &no_args).unwrap_err();
        assert!(e.message.contains("used before it is defined"), "{e}");
        assert_eq!(e.line, 2);
    }
}
