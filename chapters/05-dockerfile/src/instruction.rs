//! The typed result of parsing: one [`Instruction`] per logical line.
//!
//! Each instruction keeps its keyword, its flags (`--from=build`) in the order
//! written, its arguments in the shape that instruction takes, and the line
//! where it starts, so that the builder can point at it in an error.
//!
//! [`Instruction::sexp`] prints it as buildkit's `Node.Dump()` does
//! (`(copy ["--from=build"] "a" "/b")`): that is how we compare our parser
//! with buildkit's own test data.

use std::fmt;

use crate::heredoc::Heredoc;

/// Every instruction docker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `FROM image [AS name]`: starts a stage.
    From,
    /// `RUN cmd`: runs a command in a container; its changes become a layer.
    Run,
    /// `CMD`: the default command of the image.
    Cmd,
    /// `LABEL k=v`: metadata.
    Label,
    /// `MAINTAINER name`: deprecated, an author label.
    Maintainer,
    /// `EXPOSE 80/tcp`: documents a port.
    Expose,
    /// `ENV k=v`: environment of later steps and of the image.
    Env,
    /// `ADD src dst`: COPY plus local tar extraction.
    Add,
    /// `COPY src dst`: files from the context or another stage.
    Copy,
    /// `ENTRYPOINT`: the executable of the image.
    Entrypoint,
    /// `VOLUME /data`: a path whose data lives outside the container.
    Volume,
    /// `USER name[:group]`.
    User,
    /// `WORKDIR /path`.
    Workdir,
    /// `ARG name[=default]`: a build-time variable.
    Arg,
    /// `ONBUILD INSTRUCTION`: a trigger for images built FROM this one.
    Onbuild,
    /// `STOPSIGNAL SIGTERM`.
    Stopsignal,
    /// `HEALTHCHECK [flags] CMD …` or `HEALTHCHECK NONE`.
    Healthcheck,
    /// `SHELL ["/bin/bash", "-c"]`: the shell of shell-form commands.
    Shell,
}

impl Keyword {
    /// All keywords, in the order docker's documentation lists them.
    pub const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::Stopsignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The keyword in upper case, as it is usually written.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }

    /// Keywords are case-insensitive: `run`, `Run` and `RUN` are the same.
    pub fn parse(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }

    /// The keyword closest to a misspelled one (`COPPY` → `COPY`), if any is
    /// close enough to be a likely typo.
    pub fn suggest(word: &str) -> Option<Keyword> {
        let word = word.to_ascii_uppercase();
        Keyword::ALL
            .into_iter()
            .map(|k| (edit_distance(&word, k.as_str()), k))
            .filter(|&(d, _)| d <= 2)
            .min_by_key(|&(d, _)| d)
            .map(|(_, k)| k)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Levenshtein distance: how many single-letter edits turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A builder flag such as `--from=build` or `--link`, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without its dashes: `from`.
    pub name: String,
    /// The value after `=`, if there was one.
    pub value: Option<String>,
}

impl Flag {
    /// Splits a word `--name=value` (the dashes are optional here).
    pub fn from_word(word: &str) -> Flag {
        let word = word.strip_prefix("--").unwrap_or(word);
        match word.split_once('=') {
            Some((name, value)) => Flag {
                name: name.to_string(),
                value: Some(value.to_string()),
            },
            None => Flag {
                name: word.to_string(),
                value: None,
            },
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "--{}={}", self.name, v),
            None => write!(f, "--{}", self.name),
        }
    }
}

/// How a key/value pair of ENV or LABEL was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairForm {
    /// The old form `ENV key the rest of the line`: one pair, the value is
    /// everything after the first blank.
    Legacy,
    /// `ENV key=value key2="value 2"`: any number of pairs.
    Equals,
}

/// One `key=value` of ENV or LABEL. Quotes and escapes are still in the
/// value: they are removed when the builder substitutes variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The key, as written.
    pub key: String,
    /// The value, raw.
    pub value: String,
    /// Which of the two syntaxes was used.
    pub form: PairForm,
}

// ANCHOR: args
/// The arguments of an instruction, in the shape that instruction takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Nothing after the keyword (`CMD` alone, `HEALTHCHECK`).
    Empty,
    /// Exec form: a JSON array of strings, run without a shell.
    Exec(Vec<String>),
    /// Shell form of RUN, CMD, ENTRYPOINT, SHELL: one raw string, later given
    /// to the stage's shell (`/bin/sh -c`).
    Shell(String),
    /// One raw string: USER, WORKDIR, STOPSIGNAL, MAINTAINER.
    Text(String),
    /// Blank-separated words: FROM, EXPOSE, ARG, and the non-JSON form of
    /// ADD, COPY and VOLUME.
    Words(Vec<String>),
    /// ENV and LABEL.
    Pairs(Vec<Pair>),
    /// HEALTHCHECK: its kind (`CMD`, `NONE`) and the command after it.
    Health {
        /// `CMD` or `NONE` (as written).
        kind: String,
        /// The command, in exec or shell form, or [`Args::Empty`].
        command: Box<Args>,
    },
    /// ONBUILD: the trigger instruction.
    Onbuild(Box<Instruction>),
}
// ANCHOR_END: args

/// One instruction of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Which instruction.
    pub keyword: Keyword,
    /// Flags in the order written.
    pub flags: Vec<Flag>,
    /// The arguments.
    pub args: Args,
    /// 1-based line where it starts.
    pub line: usize,
    /// 1-based line where it ends (after continuations).
    pub end_line: usize,
    /// The logical line as read (continuations joined, comments removed).
    pub original: String,
    /// Heredoc bodies opened on this line (`RUN <<EOF`), in order. For an
    /// ONBUILD trigger they are here, on the ONBUILD, as buildkit has them.
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    /// The value of flag `--name`, if given (`Some("")` for `--link`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_deref().unwrap_or(""))
    }

    /// Can this instruction open heredocs? RUN, COPY and ADD in shell form,
    /// also as ONBUILD triggers.
    pub fn takes_heredocs(&self) -> bool {
        match (&self.keyword, &self.args) {
            (_, Args::Exec(_)) => false,
            (Keyword::Run | Keyword::Copy | Keyword::Add, _) => true,
            (Keyword::Onbuild, Args::Onbuild(trigger)) => trigger.takes_heredocs(),
            _ => false,
        }
    }

    /// This instruction as buildkit's `Node.Dump()` prints it (heredoc
    /// bodies are not part of it).
    pub fn sexp(&self) -> String {
        let mut out = self.keyword.as_str().to_ascii_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self
                .flags
                .iter()
                .map(|f| go_quote(&f.to_string()))
                .collect();
            out.push_str(&format!(" [{}]", flags.join(" ")));
        }
        push_args(&mut out, &self.args);
        format!("({out})")
    }
}

fn push_args(out: &mut String, args: &Args) {
    let mut push = |s: &str| {
        out.push(' ');
        out.push_str(&go_quote(s));
    };
    match args {
        Args::Empty => {}
        Args::Exec(items) | Args::Words(items) => items.iter().for_each(|s| push(s)),
        Args::Shell(s) | Args::Text(s) => push(s),
        Args::Pairs(pairs) => {
            for p in pairs {
                push(&p.key);
                push(&p.value);
                push(match p.form {
                    PairForm::Legacy => "",
                    PairForm::Equals => "=",
                });
            }
        }
        Args::Health { kind, command } => {
            push(kind);
            push_args(out, command);
        }
        Args::Onbuild(trigger) => {
            out.push(' ');
            out.push_str(&trigger.sexp());
        }
    }
}

/// Quotes a string as Go's `strconv.Quote` does (the format of buildkit's
/// dumps): `\"`, `\\`, `\n`… and `\x00` for other control characters.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c == ' ' || !(c.is_control() || c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive_and_typos_get_a_suggestion() {
        assert_eq!(Keyword::parse("copy"), Some(Keyword::Copy));
        assert_eq!(Keyword::parse("HealthCheck"), Some(Keyword::Healthcheck));
        assert_eq!(Keyword::parse("COPPY"), None);
        assert_eq!(Keyword::suggest("COPPY"), Some(Keyword::Copy));
        assert_eq!(Keyword::suggest("entrypiont"), Some(Keyword::Entrypoint));
        assert_eq!(Keyword::suggest("BANANA"), None);
    }

    #[test]
    fn flags_keep_their_text() {
        let f = Flag::from_word("--from=build");
        assert_eq!(f.name, "from");
        assert_eq!(f.value.as_deref(), Some("build"));
        assert_eq!(f.to_string(), "--from=build");
        assert_eq!(Flag::from_word("--link").to_string(), "--link");
    }

    #[test]
    fn quoting_follows_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\t\u{0}♥"), "\"\\t\\x00♥\"");
    }

    #[test]
    fn sexp_of_an_instruction() {
        let i = Instruction {
            keyword: Keyword::Copy,
            flags: vec![Flag::from_word("--from=a")],
            args: Args::Words(vec!["x".into(), "/y".into()]),
            line: 1,
            end_line: 1,
            original: String::new(),
            heredocs: Vec::new(),
        };
        assert_eq!(i.sexp(), r#"(copy ["--from=a"] "x" "/y")"#);
    }
}
