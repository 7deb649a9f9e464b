//! Variable substitution, as docker does it in ENV, ARG, COPY, WORKDIR…
//!
//! Docker does **not** run a shell to expand `$HOME` in a Dockerfile: it has
//! its own small lexer that mimics the shell's rules:
//!
//! - `$x` and `${x}`: the value, or nothing when unset;
//! - `${x:-word}`: `word` when x is unset **or empty**; `${x-word}`: only when
//!   unset. `${x:+word}` / `${x+word}`: `word` when x is set (and non-empty
//!   for `:+`), else nothing;
//! - `${x:?msg}` / `${x?msg}`: an error with `msg` when x is unset (or empty);
//! - `'…'` keeps everything literally; `"…"` still expands `$`; the escape
//!   character (`\`) makes the next character literal, and inside `"…"` only
//!   escapes `"`, `$` and itself;
//! - positional and special parameters (`$1`, `$@`, `$#`…) are never set.
//!
//! [`Lexer::expand_words`] also splits the result into words at blanks
//! outside quotes, as the shell would (used by e.g. `EXPOSE $PORTS`): a
//! variable's value is split, a quoted one is not.

use std::collections::HashMap;
use std::fmt;

/// A substitution that failed (`${x:?must be set}`, `${x`, `'unclosed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// The text that was being expanded.
    pub source: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to process {:?}: {}", self.source, self.message)
    }
}

impl std::error::Error for ExpandError {}

/// Docker's word lexer, for one escape character.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub(crate) escape: char,
    /// Keep quote characters in the result (heredoc detection needs them).
    pub(crate) raw_quotes: bool,
    /// Keep escape characters in the result.
    pub(crate) raw_escapes: bool,
    /// Leave unset variables as written (`$x`, `${x:-d}`) instead of "".
    pub(crate) skip_unset: bool,
    /// Quotes are ordinary characters (a heredoc body: `it's` is text).
    pub(crate) quotes_are_text: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new(crate::directive::DEFAULT_ESCAPE)
    }
}

impl Lexer {
    /// A lexer using `escape` (from the `# escape=` directive).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            quotes_are_text: false,
        }
    }

    /// The lexer of a heredoc body (`COPY <<EOF` with an unquoted name):
    /// variables are expanded, but quotes and escapes are text, as in a
    /// shell's heredoc (`it's` stays `it's`).
    pub fn heredoc(escape: char) -> Self {
        Lexer {
            raw_quotes: true,
            raw_escapes: true,
            quotes_are_text: true,
            ..Lexer::new(escape)
        }
    }

    /// Expands variables and removes quotes, keeping blanks (ENV values).
    pub fn expand_word(
        &self,
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<String, ExpandError> {
        self.run(text, env).map(|(word, _)| word)
    }

    /// Expands, then splits into words as the shell would.
    pub fn expand_words(
        &self,
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<Vec<String>, ExpandError> {
        self.run(text, env).map(|(_, words)| words)
    }

    fn run(
        &self,
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut scanner = Scanner {
            chars: text.chars().collect(),
            pos: 0,
            lexer: *self,
            escape: self.escape,
            env,
        };
        scanner.until(None).map_err(|message| ExpandError {
            source: text.to_string(),
            message,
        })
    }
}

/// Builds the list of words while characters are added.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// An ordinary character: a blank ends the current word.
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    lexer: Lexer,
    escape: char,
    env: &'a HashMap<String, String>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads until `stop` (consumed) or the end; returns the text and words.
    fn until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let value = self.dollar()?;
                    // A variable's value is split into words.
                    value.chars().for_each(|c| words.add_char(c));
                    result.push_str(&value);
                }
                '\'' | '"' if self.lexer.quotes_are_text => {
                    self.next();
                    words.add_char(c);
                    result.push(c);
                }
                '\'' => {
                    let value = self.single_quoted()?;
                    words.add_raw_str(&value);
                    result.push_str(&value);
                }
                '"' => {
                    let value = self.double_quoted()?;
                    words.add_raw_str(&value);
                    result.push_str(&value);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        if self.lexer.raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        // The escape makes the next character literal; at
                        // the very end it disappears.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    /// `'…'`: everything literal, the escape too; no way to put a `'` inside.
    fn single_quoted(&mut self) -> Result<String, String> {
        self.next();
        let mut result = String::new();
        if self.lexer.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// `"…"`: `$` still expands; the escape only escapes `"`, `$` and itself.
    fn double_quoted(&mut self) -> Result<String, String> {
        self.next();
        let mut result = String::new();
        if self.lexer.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.escape {
                        if self.lexer.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                c = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    // ANCHOR: dollar
    /// After `$`: a name, or `{…}` with its modifiers.
    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into()); // `$.` is a literal dollar
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let value = self.lookup(&name);
        match self.next() {
            Some('}') => Ok(match value {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(colon @ ':') | Some(colon @ ('-' | '+' | '?')) => {
                // With `:`, an empty value counts as unset.
                let (modifier, empty_is_unset) = if colon == ':' {
                    (self.next(), true)
                } else {
                    (Some(colon), false)
                };
                let word = self.modifier_word()?;
                if value.is_none() && self.lexer.skip_unset {
                    // Left for later, as written.
                    let colon = if empty_is_unset { ":" } else { "" };
                    let m = modifier.map(String::from).unwrap_or_default();
                    return Ok(format!("${{{name}{colon}{m}{word}}}"));
                }
                let set = match &value {
                    Some(v) => !(empty_is_unset && v.is_empty()),
                    None => false,
                };
                match modifier {
                    Some('-') => Ok(if set { value.unwrap_or_default() } else { word }),
                    Some('+') => Ok(if set { word } else { String::new() }),
                    Some('?') if set => Ok(value.unwrap_or_default()),
                    Some('?') => {
                        let message = if !word.is_empty() {
                            word
                        } else if value.is_none() {
                            "is not allowed to be unset".into()
                        } else {
                            "is not allowed to be empty".into()
                        };
                        Err(format!("{name}: {message}"))
                    }
                    Some(m) => Err(format!("unsupported modifier ({m}) in substitution")),
                    None => Err("syntax error: missing '}'".into()),
                }
            }
            _ => Err("missing ':' in substitution".into()),
        }
    }
    // ANCHOR_END: dollar

    /// The word after a modifier, up to the closing `}` (it may itself
    /// contain `${…}`).
    fn modifier_word(&mut self) -> Result<String, String> {
        match self.until(Some('}')) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".into()),
            Err(e) => Err(e),
        }
    }

    /// A variable name: letters, digits, `_`; or digits only (positional);
    /// or one special character (`$@`, `$#`…).
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [("PWD", "/home"), ("EMPTY", ""), ("LIST", "a  b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(text: &str) -> Result<String, ExpandError> {
        Lexer::default().expand_word(text, &env())
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(word("$PWD/x").unwrap(), "/home/x");
        assert_eq!(word("${PWD}x").unwrap(), "/homex");
        assert_eq!(word("a$UNSET.b").unwrap(), "a.b");
        assert_eq!(word("$.").unwrap(), "$.");
    }

    #[test]
    fn defaults_and_alternatives() {
        assert_eq!(word("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(word("${EMPTY-d}").unwrap(), "");
        assert_eq!(word("${UNSET-d}").unwrap(), "d");
        assert_eq!(word("${EMPTY:+a}").unwrap(), "");
        assert_eq!(word("${EMPTY+a}").unwrap(), "a");
        assert_eq!(word("${UNSET:-${PWD}}").unwrap(), "/home");
    }

    #[test]
    fn required_variables() {
        let e = word("${UNSET:?must be set}").unwrap_err();
        assert_eq!(e.message, "UNSET: must be set");
        assert!(word("${EMPTY:?}").is_err());
        assert_eq!(word("${EMPTY?}").unwrap(), "");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(word("'$PWD'").unwrap(), "$PWD");
        assert_eq!(word("\"$PWD\"").unwrap(), "/home");
        assert_eq!(word("\\$PWD").unwrap(), "$PWD");
        assert_eq!(word("\"a\\tb\"").unwrap(), "a\\tb");
        assert!(word("'open").is_err());
        assert_eq!(
            Lexer::new('`').expand_word("`$PWD", &env()).unwrap(),
            "$PWD"
        );
    }

    #[test]
    fn words_split_values_but_not_quotes() {
        let l = Lexer::default();
        assert_eq!(l.expand_words("x$LIST", &env()).unwrap(), ["xa", "b"]);
        assert_eq!(
            l.expand_words("\"$LIST\" c", &env()).unwrap(),
            ["a  b", "c"]
        );
    }
}
