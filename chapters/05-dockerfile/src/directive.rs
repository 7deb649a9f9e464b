//! Parser directives: `# syntax=…` and `# escape=…`.
//!
//! They look like comments, and that is the trick: an old builder that does
//! not know them just skips them. They are only read at the very top of the
//! file; the first line that is not a directive (an ordinary comment, a blank
//! line, an instruction) ends the search for good, so `# escape=`` ` further
//! down is just a comment.
//!
//! `escape` changes the character that escapes and continues lines, from `\`
//! to `` ` ``: on Windows `C:\path` is full of backslashes.

/// The escape character docker uses when no directive says otherwise.
pub const DEFAULT_ESCAPE: char = '\\';

/// The directives found at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=docker/dockerfile:1`: which frontend buildkit should use.
    /// Recorded only: crabbox always uses its own parser.
    pub syntax: Option<String>,
    /// `# check=skip=…`: buildkit's lint settings. Recorded only.
    pub check: Option<String>,
    /// The escape and line-continuation character: `\` or `` ` ``.
    pub escape: char,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            check: None,
            escape: DEFAULT_ESCAPE,
        }
    }
}

/// Reads directives line by line until the first line that is not one.
#[derive(Debug, Default)]
pub struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
    directives: Directives,
}

impl DirectiveParser {
    /// A parser that has not seen any line yet.
    pub fn new() -> Self {
        Self::default()
    }

    // ANCHOR: feed
    /// Looks at one line (without its newline, leading blanks removed).
    /// Returns `Ok(true)` when the line was a directive.
    pub fn feed(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = split_directive(line) else {
            // Any other line ends the directives, forever.
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            // `# foo=bar` is an ordinary comment, and ends the directives.
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (Some(c @ ('\\' | '`')), None) => self.directives.escape = c,
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\ (write `# escape=\\` or `# escape=``)"
                        ))
                    }
                }
            }
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        Ok(true)
    }
    // ANCHOR_END: feed

    /// The escape character in force now.
    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// Everything read so far.
    pub fn directives(&self) -> &Directives {
        &self.directives
    }
}

/// Matches `#\s*NAME\s*=\s*VALUE\s*` (buildkit's regular expression), where
/// NAME is a letter followed by letters or digits. Returns (NAME, VALUE).
fn split_directive(line: &str) -> Option<(String, String)> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let value = rest
        .trim_start_matches(is_space)
        .strip_prefix('=')?
        .trim_matches(is_space);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_and_syntax_are_read_at_the_top() {
        let mut p = DirectiveParser::new();
        assert_eq!(p.feed("# syntax = docker/dockerfile:1"), Ok(true));
        assert_eq!(p.feed("#escape=`"), Ok(true));
        assert_eq!(p.escape(), '`');
        assert_eq!(
            p.directives().syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
    }

    #[test]
    fn any_other_line_ends_the_directives() {
        let mut p = DirectiveParser::new();
        assert_eq!(p.feed("# a comment"), Ok(false));
        assert_eq!(p.feed("# escape=`"), Ok(false));
        assert_eq!(p.escape(), '\\');

        let mut p = DirectiveParser::new();
        assert_eq!(p.feed(""), Ok(false));
        assert_eq!(p.feed("# escape=`"), Ok(false));

        let mut p = DirectiveParser::new();
        assert_eq!(p.feed("# unknown=1"), Ok(false));
        assert_eq!(p.feed("# escape=`"), Ok(false));
    }

    #[test]
    fn bad_or_repeated_directives_are_errors() {
        let mut p = DirectiveParser::new();
        assert!(p.feed("# escape=x").is_err());
        let mut p = DirectiveParser::new();
        assert_eq!(p.feed("# escape=`"), Ok(true));
        assert!(p.feed("# ESCAPE=\\").is_err());
    }
}
