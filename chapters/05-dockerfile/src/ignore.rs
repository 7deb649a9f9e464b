//! `.dockerignore`: which files of the build context COPY never sees.
//!
//! Before a build starts, docker sends the whole build context (the
//! directory named on the command line) to the builder. A `.dockerignore`
//! file leaves things out: `.git`, `node_modules`, build outputs, secrets.
//! What it leaves out is not merely "not copied": for the build, it does not
//! exist, so `COPY secret.key /` fails with "file not found".
//!
//! The format, as docker and buildkit read it:
//!
//! - one pattern a line; a line starting with `#` (in the very first column)
//!   is a comment; blank lines are skipped; spaces around a pattern are not
//!   part of it;
//! - a pattern is a path relative to the context, cleaned as Go's
//!   `filepath.Clean` does (`./a//b/` is `a/b`), and a leading `/` means
//!   nothing (`/foo` is `foo`);
//! - `*` matches any run of characters except `/`, `?` one character except
//!   `/`, `[a-z]` one character of a class (`[^a-z]` or `[!a-z]` one
//!   outside it), `\` makes the next character literal, and `**` matches any
//!   number of whole directories, none included (`**/*.go`);
//! - a pattern that matches a directory excludes everything below it;
//! - `!pattern` puts back what an earlier line excluded, and when several
//!   lines match a path, **the last one decides**.

use ch01_images::error::{io_error, Result};
use std::path::{Path, PathBuf};

/// The rules of one `.dockerignore` file, in the order they were written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// The cleaned pattern, relative to the context root.
    pattern: String,
    /// A `!` line: a match puts the path back instead of leaving it out.
    reinclude: bool,
}

impl Ignore {
    /// No rules: every file of the context is visible.
    pub fn none() -> Ignore {
        Ignore::default()
    }

    /// True when there is nothing to ignore.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    // ANCHOR: parse
    /// Reads the text of a `.dockerignore` file. Nothing in it is an error:
    /// a pattern that can match nothing (an unclosed `[`) just matches nothing.
    pub fn parse(text: &str) -> Ignore {
        // Editors on Windows like to start a file with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for line in text.lines() {
            // A comment only in the first column: ` #x` is the pattern `#x`.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            let (reinclude, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pattern.is_empty() {
                continue; // a blank line, or a lone `!`
            }
            let pattern = clean(pattern);
            // `/foo` and `foo` are the same: paths are relative to the context.
            let pattern = match pattern.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => pattern,
            };
            rules.push(Rule { pattern, reinclude });
        }
        Ignore { rules }
    }
    // ANCHOR_END: parse

    /// Finds the ignore file of a build, as buildkit does: first
    /// `<Dockerfile>.dockerignore` beside the Dockerfile (so that
    /// `app.dockerfile` and `web.dockerfile` can share one context with
    /// different rules), else `.dockerignore` at the context root, else none.
    /// Also says which file it used.
    pub fn load(dockerfile: &Path, context: &Path) -> Result<(Ignore, Option<PathBuf>)> {
        let mut beside = dockerfile.as_os_str().to_os_string();
        beside.push(".dockerignore");
        for candidate in [PathBuf::from(beside), context.join(".dockerignore")] {
            match std::fs::read(&candidate) {
                Ok(bytes) => {
                    let ignore = Ignore::parse(&String::from_utf8_lossy(&bytes));
                    return Ok((ignore, Some(candidate)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("reading", &candidate, e)),
            }
        }
        Ok((Ignore::none(), None))
    }

    // ANCHOR: excludes
    /// Is this path (relative to the context root, `/`-separated) left out?
    /// Every line is tried in order and the last one that matches decides;
    /// a line matches a path when it matches the path itself or one of the
    /// directories above it.
    pub fn excludes(&self, relative: &str) -> bool {
        let path = clean(relative);
        let path = path.trim_start_matches('/');
        if path.is_empty() || path == "." {
            return false; // the context root itself is always there
        }
        let mut excluded = false;
        for rule in &self.rules {
            if matches_path_or_parent(&rule.pattern, path) {
                excluded = !rule.reinclude;
            }
        }
        excluded
    }
    // ANCHOR_END: excludes

    /// Could a `!` line put back something *below* this directory? When it
    /// cannot, an excluded directory need not even be read. This answer
    /// errs on the side of "maybe": the per-file [`Ignore::excludes`] has
    /// the last word.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let dir = clean(dir);
        let dir_parts: Vec<&str> = dir.trim_start_matches('/').split('/').collect();
        self.rules.iter().filter(|rule| rule.reinclude).any(|rule| {
            // The pattern's first components must fit the directory's.
            for (pattern_part, dir_part) in rule.pattern.split('/').zip(&dir_parts) {
                if pattern_part.contains("**") {
                    return true; // any depth: it may reach below
                }
                if !glob_match(pattern_part, dir_part) {
                    return false;
                }
            }
            true
        })
    }
}

/// Does `pattern` (with `**`) match `path`, or one of the directories
/// holding it (`a`, then `a/b`, for `a/b/c`)?
fn matches_path_or_parent(pattern: &str, path: &str) -> bool {
    let parents = path.match_indices('/').map(|(slash, _)| &path[..slash]);
    std::iter::once(path)
        .chain(parents)
        .any(|candidate| match_chars(&chars(pattern), &chars(candidate), true))
}

/// Go's `filepath.Match`: does `name` match the shell pattern `pattern`,
/// as a whole? `*` and `?` never match a `/`; there is no `**` here. A
/// malformed pattern (an unclosed `[`, a trailing `\`) matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match_chars(&chars(pattern), &chars(name), false)
}

fn chars(text: &str) -> Vec<char> {
    text.chars().collect()
}

// ANCHOR: match_chars
/// Matches a pattern against a name, one character at a time. A `*` tries
/// every split: it takes nothing, then one character more, and so on, until
/// the rest of the pattern matches the rest of the name, or a `/` stops it.
/// With `double_star`, `**` takes whole directories instead (`a/b/`), or
/// nothing at all.
fn match_chars(pattern: &[char], name: &[char], double_star: bool) -> bool {
    let Some(&first) = pattern.first() else {
        return name.is_empty();
    };
    let rest = &pattern[1..];
    match first {
        '*' if double_star && rest.first() == Some(&'*') => {
            let rest = &rest[1..];
            if rest.is_empty() {
                return true; // a trailing `**`: anything at all
            }
            // `**/` and `**`: nothing, or everything up to some `/`.
            let rest = rest.strip_prefix(&['/']).unwrap_or(rest);
            match_chars(rest, name, true)
                || name
                    .iter()
                    .enumerate()
                    .any(|(i, &c)| c == '/' && match_chars(rest, &name[i + 1..], true))
        }
        '*' => {
            for taken in 0..=name.len() {
                if match_chars(rest, &name[taken..], double_star) {
                    return true;
                }
                if name.get(taken) == Some(&'/') {
                    return false; // `*` stays within one path component
                }
            }
            false
        }
        '?' => match name.first() {
            Some(&c) if c != '/' => match_chars(rest, &name[1..], double_star),
            _ => false,
        },
        '[' => {
            let Some(&c) = name.first() else {
                return false;
            };
            match match_class(rest, c) {
                Some((true, length)) => match_chars(&rest[length..], &name[1..], double_star),
                _ => false, // no match, or a malformed class
            }
        }
        '\\' => match (rest.first(), name.first()) {
            (Some(escaped), Some(c)) if escaped == c => {
                match_chars(&rest[1..], &name[1..], double_star)
            }
            _ => false, // a different character, or `\` at the very end
        },
        literal => name.first() == Some(&literal) && match_chars(rest, &name[1..], double_star),
    }
}
// ANCHOR_END: match_chars

/// Matches `c` against the character class that starts right after a `[`.
/// Returns whether it matched and how many pattern characters the class
/// took, its closing `]` included; `None` when the class is malformed.
fn match_class(class: &[char], c: char) -> Option<(bool, usize)> {
    let negated = matches!(class.first(), Some('^') | Some('!'));
    let mut i = usize::from(negated);
    let mut matched = false;
    let mut ranges = 0;
    loop {
        // A `]` closes the class, except as its very first character.
        if class.get(i) == Some(&']') && ranges > 0 {
            return Some((matched != negated, i + 1));
        }
        let (low, next) = class_char(class, i)?;
        i = next;
        let mut high = low;
        if class.get(i) == Some(&'-') {
            (high, i) = class_char(class, i + 1)?;
        }
        if low <= c && c <= high {
            matched = true;
        }
        ranges += 1;
    }
}

/// One character of a class at `i` (escaped or not), and where the next
/// one starts. A bare `-` or `]` here, or the end, is malformed (as in Go).
fn class_char(class: &[char], i: usize) -> Option<(char, usize)> {
    match class.get(i)? {
        '-' | ']' => None,
        '\\' => class.get(i + 1).map(|&c| (c, i + 2)),
        &c => Some((c, i + 1)),
    }
}

/// Cleans a `/`-separated path as Go's `filepath.Clean`: no empty or `.`
/// components, `..` cancels the component before it, no trailing `/`, and
/// `.` for nothing at all.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(".."); // above the start: kept, it matches nothing
                }
                // `/..` is `/`: nothing is above the root.
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_filepath_match() {
        assert!(glob_match("*.rs", "main.rs"));
        assert!(!glob_match("*.rs", "src/main.rs"), "* never crosses /");
        assert!(glob_match("src/*.rs", "src/main.rs"));
        assert!(glob_match("conf?", "conf1"));
        assert!(!glob_match("conf?", "conf"));
        assert!(!glob_match("a?b", "a/b"));
        assert!(glob_match("[ab]*", "beta"));
        assert!(!glob_match("[ab]*", "gamma"));
        assert!(glob_match("file[0-9]", "file7"));
        assert!(glob_match("file[^0-9]", "filex"));
        assert!(glob_match("file[!0-9]", "filex"));
        assert!(!glob_match("file[!0-9]", "file7"));
        assert!(glob_match(r"star\*", "star*"));
        assert!(!glob_match(r"star\*", "starry"));
        assert!(glob_match(r"[\]x]", "]"));
        assert!(
            glob_match("**", "anything"),
            "without ** rules, ** is two *"
        );
        assert!(!glob_match("**", "a/b"));
        // Malformed patterns match nothing, and never panic.
        for bad in ["[", "[a", "[]", "[a-]", "x\\", "[^"] {
            assert!(!glob_match(bad, "a"), "{bad}");
            assert!(!glob_match(bad, ""), "{bad}");
        }
    }

    #[test]
    fn patterns_are_cleaned_and_comments_skipped() {
        let ignore = Ignore::parse(
            "\u{feff}# a comment\n\n   \n  /foo  \n ./bar//baz/ \n #not-a-comment\n!\n",
        );
        let patterns: Vec<&str> = ignore.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(patterns, ["foo", "bar/baz", "#not-a-comment"]);
        assert!(ignore.excludes("foo"));
        assert!(ignore.excludes("/foo"));
        assert!(ignore.excludes("bar/baz/x"));
        assert!(ignore.excludes("#not-a-comment"));
        assert!(!ignore.excludes("# a comment"));
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../a/."), "/a");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn dockers_documented_examples() {
        let ignore = Ignore::parse("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(ignore.excludes("somedir/temporary.txt"));
        assert!(ignore.excludes("somedir/temp"));
        assert!(ignore.excludes("somedir/subdir/temporary.txt"));
        assert!(ignore.excludes("tempa"));
        assert!(
            !ignore.excludes("temporary.txt"),
            "*/temp* is one level down"
        );
        assert!(!ignore.excludes("tempab"), "? is exactly one character");
        assert!(
            !ignore.excludes("a/b/c/temp"),
            "*/*/temp* is exactly two levels down"
        );

        let go = Ignore::parse("**/*.go");
        assert!(
            go.excludes("main.go"),
            "** also matches no directory at all"
        );
        assert!(go.excludes("cmd/tool/main.go"));
        assert!(!go.excludes("main.rs"));

        let markdown = Ignore::parse("*.md\n!README.md");
        assert!(markdown.excludes("CHANGES.md"));
        assert!(!markdown.excludes("README.md"));
    }

    #[test]
    fn the_last_matching_line_wins() {
        let secret_last = Ignore::parse("*.md\n!README*.md\nREADME-secret.md");
        assert!(secret_last.excludes("CHANGES.md"));
        assert!(!secret_last.excludes("README.md"));
        assert!(secret_last.excludes("README-secret.md"));

        let secret_first = Ignore::parse("*.md\nREADME-secret.md\n!README*.md");
        assert!(!secret_first.excludes("README-secret.md"));
        assert!(!secret_first.excludes("README.md"));
        assert!(secret_first.excludes("CHANGES.md"));
    }

    #[test]
    fn a_directory_takes_its_contents_along() {
        let ignore = Ignore::parse("build\n**/node_modules\nlogs/**");
        assert!(ignore.excludes("build"));
        assert!(ignore.excludes("build/x/y.o"));
        assert!(!ignore.excludes("builder/main.rs"));
        assert!(ignore.excludes("web/node_modules/left-pad/index.js"));
        assert!(ignore.excludes("logs/2024/app.log"));
        assert!(!ignore.excludes(""));
        assert!(!ignore.excludes("."));
    }

    #[test]
    fn a_bang_puts_a_file_back_inside_an_excluded_directory() {
        let ignore = Ignore::parse("build\n!build/keep.txt");
        assert!(ignore.excludes("build/other.o"));
        assert!(!ignore.excludes("build/keep.txt"));
        assert!(
            ignore.excludes("build"),
            "the directory itself stays excluded"
        );
        assert!(ignore.may_include_below("build"));
        assert!(!ignore.may_include_below("src"));

        let anywhere = Ignore::parse("*\n!**/keep");
        assert!(anywhere.excludes("a/b/other"));
        assert!(!anywhere.excludes("a/b/keep"));
        assert!(anywhere.may_include_below("a/b"));
        assert!(!Ignore::parse("*\n!README.md").may_include_below("src"));
        assert!(!Ignore::none().may_include_below("src"));
    }

    #[test]
    fn load_prefers_the_dockerfiles_own_ignore_file() {
        let dir = std::env::temp_dir().join(format!("crabbox-ignore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dockerfile = dir.join("app.dockerfile");
        assert_eq!(
            Ignore::load(&dockerfile, &dir).unwrap(),
            (Ignore::none(), None)
        );

        std::fs::write(dir.join(".dockerignore"), "*.log\n").unwrap();
        let (ignore, used) = Ignore::load(&dockerfile, &dir).unwrap();
        assert_eq!(used, Some(dir.join(".dockerignore")));
        assert!(ignore.excludes("x.log"));

        std::fs::write(dir.join("app.dockerfile.dockerignore"), "*.tmp\n").unwrap();
        let (ignore, used) = Ignore::load(&dockerfile, &dir).unwrap();
        assert_eq!(used, Some(dir.join("app.dockerfile.dockerignore")));
        assert!(ignore.excludes("x.tmp"));
        assert!(!ignore.excludes("x.log"), "only one file is used");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
