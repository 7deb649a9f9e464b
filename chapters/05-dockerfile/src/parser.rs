//! The parser: from the text of a Dockerfile to a list of [`Instruction`]s.
//!
//! It works in two steps, as buildkit does:
//!
//! 1. **Logical lines.** Physical lines are read one by one. Comments (`#`
//!    first on the line) are dropped; a line ending in the escape character
//!    (`\` unless `# escape=` said otherwise) continues on the next one.
//!    Comment lines and blank lines *inside* a continuation are skipped, so a
//!    long `RUN` can carry comments; a continuation at the end of the file
//!    just ends there.
//! 2. **One instruction per logical line.** The first word is the keyword
//!    (any case); then come flags (`--from=build`, only at the start); then
//!    the arguments, whose shape depends on the keyword: a JSON array (exec
//!    form) for RUN/CMD/ENTRYPOINT/SHELL when the text is valid JSON, else
//!    one raw string (shell form); key/value pairs for ENV and LABEL; words
//!    for FROM, EXPOSE, ARG…
//!
//! Variables are **not** substituted here: that needs the values of ARG and
//! ENV at that point of the build, which is the builder's job (see
//! [`crate::expand`]).

use crate::directive::{DirectiveParser, Directives};
use crate::error::ParseError;
use crate::heredoc::heredocs_in_line;
use crate::instruction::{Args, Flag, Instruction, Keyword, Pair, PairForm};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# syntax=` and `# escape=` found at the top.
    pub directives: Directives,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
    /// Things that work but should be fixed (empty continuation lines).
    pub warnings: Vec<String>,
}

impl Dockerfile {
    /// The whole file in buildkit's s-expression format, one line per
    /// instruction (what `parse --sexp` prints).
    pub fn sexp(&self) -> String {
        self.instructions.iter().map(|i| i.sexp() + "\n").collect()
    }
}

// ANCHOR: parse
/// Parses the text of a Dockerfile. `file` is only used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let error = |line: usize, message: String| ParseError {
        file: file.to_string(),
        line: line.max(1),
        message,
    };
    // A byte-order mark written by some Windows editors is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut directives = DirectiveParser::new();
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    let mut lines = text.split_inclusive('\n');
    let mut current = 0;

    while let Some(raw) = lines.next() {
        current += 1;
        let start = current;
        let first = trim_newline(raw).trim_start();
        directives.feed(first).map_err(|m| error(current, m))?;
        let escape = directives.escape();
        // A comment (or a directive, which looks like one) says nothing more.
        let content = if is_comment(first) { "" } else { first };
        let (mut line, mut ended) = trim_continuation(content, escape);
        if ended && line.is_empty() {
            continue;
        }

        let mut empty_continuation = false;
        while !ended {
            let Some(next) = lines.next() else { break };
            current += 1;
            // Continuation lines keep their leading blanks, as docker does.
            let next = trim_newline(next);
            if is_comment(next) {
                continue;
            }
            if next.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, end) = trim_continuation(next, escape);
            line.push_str(&part);
            ended = end;
        }
        if empty_continuation {
            warnings.push(format!(
                "{file}:{start}: empty continuation line (it will become an error in a future docker release)"
            ));
        }

        let mut instruction = instruction_from_line(&line, escape).map_err(|m| error(start, m))?;

        // Heredoc bodies follow the line that opens them, raw: no comment,
        // continuation or directive processing inside a body.
        if instruction.takes_heredocs() && line.contains("<<") {
            for mut doc in heredocs_in_line(&line) {
                let mut terminated = false;
                for body_line in lines.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(body_line);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body_line);
                }
                if !terminated {
                    return Err(error(
                        start,
                        format!(
                            "unterminated heredoc: no line {:?} closes <<{} (it must be alone on its line)",
                            doc.name, doc.name
                        ),
                    ));
                }
                instruction.heredocs.push(doc);
            }
        }
        set_lines(&mut instruction, start, current);
        instructions.push(instruction);
    }

    if instructions.is_empty() {
        return Err(error(
            current,
            "file with no instructions (a Dockerfile starts with FROM IMAGE)".to_string(),
        ));
    }
    Ok(Dockerfile {
        directives: directives.directives().clone(),
        instructions,
        warnings,
    })
}
// ANCHOR_END: parse

fn set_lines(instruction: &mut Instruction, start: usize, end: usize) {
    instruction.line = start;
    instruction.end_line = end;
    if let Args::Onbuild(trigger) = &mut instruction.args {
        set_lines(trigger, start, end);
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

// ANCHOR: trim_continuation
/// Removes a trailing escape character (and blanks after it) that continues
/// the line. Returns the line and whether the logical line ends here.
///
/// An escape preceded by another escape is a literal one, not a
/// continuation: `ENV C trailing\\` ends the line.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}
// ANCHOR_END: trim_continuation

/// Blanks that separate words in buildkit (`[\t\v\f\r ]+`).
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// Splits `s` at its first run of blanks: (first word, rest).
fn split_first_word(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(i) => (&s[..i], s[i..].trim_start_matches(is_blank)),
        None => (s, ""),
    }
}

/// Turns one logical line into an instruction (line numbers set later).
fn instruction_from_line(line: &str, escape: char) -> Result<Instruction, String> {
    let line = line.trim();
    let (word, rest) = split_first_word(line);
    let keyword = Keyword::parse(word).ok_or_else(|| unknown_instruction(word))?;
    let (rest, flags) = extract_flags(rest);
    let rest = rest.trim();

    let args = match keyword {
        Keyword::Add | Keyword::Copy | Keyword::Volume => maybe_json_or_words(rest)?,
        Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell => maybe_json(rest)?,
        Keyword::Env | Keyword::Label => pairs(rest, keyword, escape)?,
        Keyword::Arg => Args::Words(parse_words(rest, escape)),
        Keyword::From | Keyword::Expose => blank_separated(rest),
        Keyword::Maintainer | Keyword::Stopsignal | Keyword::User | Keyword::Workdir => {
            if rest.is_empty() {
                Args::Empty
            } else {
                Args::Text(rest.to_string())
            }
        }
        Keyword::Healthcheck => healthcheck(rest)?,
        Keyword::Onbuild => onbuild(rest, escape)?,
    };
    let args = match args {
        Args::Words(w) if w.is_empty() => Args::Empty,
        other => other,
    };
    Ok(Instruction {
        keyword,
        flags: flags.iter().map(|w| Flag::from_word(w)).collect(),
        args,
        line: 0,
        end_line: 0,
        original: line.to_string(),
        heredocs: Vec::new(),
    })
}

fn unknown_instruction(word: &str) -> String {
    match Keyword::suggest(word) {
        Some(k) => format!("unknown instruction: {word} (did you mean {k}?)"),
        None => {
            let all: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown instruction: {word} (instructions are {})",
                all.join(", ")
            )
        }
    }
}

// ANCHOR: extract_flags
/// Reads the flags at the start of the arguments: words beginning with
/// `--`, until the first word that does not, or a lone `--`. Quotes and `\`
/// inside a flag are removed (`--label="a b"` gives `--label=a b`).
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut chars = line.char_indices().peekable();
    loop {
        // Skip blanks and look at the next word.
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return ("", flags);
        };
        if !line[start..].starts_with("--") {
            return (&line[start..], flags);
        }
        let mut word = String::new();
        let mut blank_ok = false; // `--x=""` is a flag even though empty
        let mut quote: Option<char> = None;
        let mut end = line.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == '\\' => match chars.next() {
                    Some((_, escaped)) => word.push(escaped),
                    None => quote = None,
                },
                _ => word.push(c),
            }
        }
        if word == "--" {
            return (&line[end..], flags);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
    }
}
// ANCHOR_END: extract_flags

/// `["a", "b"]` as a list of strings. `Ok(None)` when the text is not a JSON
/// array at all (then it is shell form); an error for an array of something
/// else than strings (`[1, 2]`), which is surely a mistake.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only"
                    .to_string(),
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

// ANCHOR: maybe_json
/// RUN, CMD, ENTRYPOINT, SHELL: exec form if valid JSON, else shell form.
fn maybe_json(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::Empty);
    }
    Ok(match parse_json(rest)? {
        Some(items) => Args::Exec(items),
        None => Args::Shell(rest.to_string()),
    })
}
// ANCHOR_END: maybe_json

/// ADD, COPY, VOLUME: exec form if valid JSON, else blank-separated words.
fn maybe_json_or_words(rest: &str) -> Result<Args, String> {
    Ok(match parse_json(rest)? {
        Some(items) => Args::Exec(items),
        None => blank_separated(rest),
    })
}

fn blank_separated(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::Empty;
    }
    Args::Words(
        rest.split(is_blank)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Splits into words at blanks outside quotes. Quotes and escapes are
/// **kept** (`a="b c"` stays one word, with its quotes): they are removed
/// later, when variables are substituted.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if quote.is_none() && c.is_whitespace() {
            if in_word && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        in_word = true;
        match quote {
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    // An escape keeps itself and the character after it,
                    // even a quote; at the very end it is dropped.
                    if let Some(next) = chars.next() {
                        word.push(c);
                        word.push(next);
                    }
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                // Inside '…' nothing can be escaped.
                if c == escape && q != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(c);
                            word.push(next);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(c);
            }
        }
    }
    // A quote still open at the end keeps its word, as buildkit does
    // (`ENV name='a\'b'` is one word: `\` cannot escape inside '…').
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `key value` (old form, one pair) or `k=v k2=v2`.
fn pairs(rest: &str, keyword: Keyword, escape: char) -> Result<Args, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(format!(
            "{keyword} needs arguments (write {keyword} key=value)"
        ));
    };
    if !first.contains('=') {
        let (key, value) = split_first_word(rest);
        if value.is_empty() {
            return Err(format!(
                "{keyword} must have two arguments (write {keyword} {key}=value)"
            ));
        }
        return Ok(Args::Pairs(vec![Pair {
            key: key.to_string(),
            value: value.to_string(),
            form: PairForm::Legacy,
        }]));
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((key, value)) => Ok(Pair {
                key: key.to_string(),
                value: value.to_string(),
                form: PairForm::Equals,
            }),
            None => Err(format!(
                "syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Args::Pairs)
}

/// HEALTHCHECK: a kind (`CMD`, `NONE`) then a command in either form.
fn healthcheck(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::Empty);
    }
    let (kind, command) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    Ok(Args::Health {
        kind: kind.to_string(),
        command: Box::new(maybe_json(command)?),
    })
}

/// ONBUILD: the rest of the line is itself an instruction.
fn onbuild(rest: &str, escape: char) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::Empty);
    }
    let trigger = instruction_from_line(rest, escape)?;
    match trigger.keyword {
        Keyword::Onbuild => Err("ONBUILD ONBUILD is not allowed".to_string()),
        Keyword::From | Keyword::Maintainer => Err(format!(
            "{} isn't allowed as an ONBUILD trigger",
            trigger.keyword
        )),
        _ => Ok(Args::Onbuild(Box::new(trigger))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sexp(text: &str) -> String {
        parse("Dockerfile", text).unwrap().sexp()
    }

    #[test]
    fn comments_continuations_and_case() {
        let text = "# a comment\nfrom alpine\nRUN echo a \\\n# inside\n\n  b\nrun echo c \\";
        assert_eq!(
            sexp(text),
            "(from \"alpine\")\n(run \"echo a   b\")\n(run \"echo c\")\n"
        );
        let df = parse("Dockerfile", text).unwrap();
        assert_eq!(df.instructions[1].line, 3);
        assert_eq!(df.instructions[1].end_line, 6);
        assert_eq!(df.warnings.len(), 1);
    }

    #[test]
    fn escape_directive_changes_the_continuation() {
        let df = parse("Dockerfile", "# escape=`\nFROM x\nRUN dir C:\\ `\n  /w\n").unwrap();
        assert_eq!(df.directives.escape, '`');
        assert_eq!(df.instructions[1].args, Args::Shell("dir C:\\   /w".into()));
    }

    #[test]
    fn exec_form_and_its_fallback() {
        assert_eq!(sexp("CMD [\"a\", \"b\"]"), "(cmd \"a\" \"b\")\n");
        assert_eq!(sexp("CMD ['a']"), "(cmd \"['a']\")\n");
        assert!(parse("Dockerfile", "CMD [1]").is_err());
    }

    #[test]
    fn flags_are_kept_in_order() {
        let df = parse("f", "COPY --from=build --chmod=755 --link a /b").unwrap();
        let i = &df.instructions[0];
        assert_eq!(i.flag("from"), Some("build"));
        assert_eq!(i.flag("link"), Some(""));
        assert_eq!(i.flag("chown"), None);
        assert_eq!(
            i.sexp(),
            r#"(copy ["--from=build" "--chmod=755" "--link"] "a" "/b")"#
        );
    }

    #[test]
    fn env_in_both_forms() {
        assert_eq!(sexp("ENV a b c"), "(env \"a\" \"b c\" \"\")\n");
        assert_eq!(
            sexp("ENV a=\"b c\" d=e"),
            "(env \"a\" \"\\\"b c\\\"\" \"=\" \"d\" \"e\" \"=\")\n"
        );
        assert!(parse("f", "ENV PATH").is_err());
        assert!(parse("f", "ENV a=b c").is_err());
    }

    #[test]
    fn errors_name_the_file_and_line_with_a_hint() {
        let err = parse("app.dockerfile", "FROM x\n\nCOPPY a b\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "app.dockerfile:3: unknown instruction: COPPY (did you mean COPY?)"
        );
        let err = parse("a", "# only\n\n").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("a:2: file with no instructions"));
    }

    #[test]
    fn onbuild_holds_an_instruction() {
        assert_eq!(sexp("ONBUILD RUN [\"a\"]"), "(onbuild (run \"a\"))\n");
        assert!(parse("f", "ONBUILD ONBUILD RUN a").is_err());
    }

    #[test]
    fn heredoc_bodies_are_collected() {
        let text = "FROM x\nRUN <<EOF\n# not a comment\necho $A \\\nEOF\nCOPY <<A <<-'B' /dir/\na\nA\n\tb\n\tB\nRUN [\"cat\", \"<<EOF\"]\n";
        let df = parse("f", text).unwrap();
        let run = &df.instructions[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "# not a comment\necho $A \\\n");
        assert_eq!((run.line, run.end_line), (2, 5));
        let copy = &df.instructions[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert_eq!(copy.heredocs[0].content, "a\n");
        assert!(!copy.heredocs[1].expand);
        assert_eq!(copy.heredocs[1].body(), "b\n");
        assert_eq!(
            df.instructions[3].args,
            Args::Exec(vec!["cat".into(), "<<EOF".into()])
        );
        assert_eq!(df.instructions[3].line, 11);
    }

    #[test]
    fn an_unterminated_heredoc_is_an_error() {
        let err = parse("app.dockerfile", "FROM x\nRUN <<EOF\necho\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("app.dockerfile:2: unterminated heredoc"),
            "{err}"
        );
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"1 2\" b 'c d'", '\\'),
            ["a=\"1 2\"", "b", "'c d'"]
        );
    }
}
