//! Heredocs: a file or a script written inside the Dockerfile.
//!
//! ```dockerfile
//! RUN <<EOF
//! apt-get update
//! apt-get install -y curl
//! EOF
//! COPY <<CONF /etc/app.conf
//! port = 80
//! CONF
//! ```
//!
//! As in the shell, `<<NAME` opens a body that ends at a line holding only
//! `NAME`. `<<-NAME` strips leading tabs (of the body and of the closing
//! line); a quoted name (`<<'EOF'` or `<<"EOF"`) means "do not expand
//! variables in the body". Only RUN, COPY and ADD (also as ONBUILD triggers)
//! take heredocs, and only in shell form: in `RUN ["cat", "<<EOF"]` the text
//! `<<EOF` is just an argument.
//!
//! The parser only collects the bodies; what they mean (a script, a
//! command's stdin, a file to copy) is the builder's business.

use std::collections::HashMap;

use crate::expand::Lexer;

/// One heredoc of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The closing word, quotes removed (`EOF`).
    pub name: String,
    /// The file descriptor it feeds (`2<<EOF`), 0 when not given.
    pub fd: u32,
    /// Substitute variables in the body (false when the name was quoted).
    pub expand: bool,
    /// `<<-`: strip leading tabs.
    pub chomp: bool,
    /// The body as written, each line with its newline.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed when the heredoc was `<<-`.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// The heredocs opened on a logical line, in order, with empty bodies.
///
/// The line is split into words as the shell would (quotes and escapes
/// kept, no variable expanded), and every word that looks like
/// `[fd]<<[-]NAME` opens one.
pub fn heredocs_in_line(line: &str) -> Vec<Heredoc> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = lexer
        .expand_words(line, &HashMap::new())
        .unwrap_or_default();
    words.iter().filter_map(|w| heredoc_from_word(w)).collect()
}

// ANCHOR: heredoc_from_word
/// `[fd]<<[-]NAME` → a heredoc; anything else → `None`.
fn heredoc_from_word(word: &str) -> Option<Heredoc> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd, rest) = word.split_at(digits);
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = if fd.is_empty() { 0 } else { fd.parse().ok()? };

    // The name with its quotes removed must be one word. If removing the
    // quotes changed anything, part of the name was quoted: no expansion.
    let mut lexer = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let names = lexer.expand_words(rest, &HashMap::new()).ok()?;
    let [name] = names.as_slice() else {
        return None;
    };
    lexer.raw_quotes = true;
    let raw = lexer.expand_words(rest, &HashMap::new()).ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Some(Heredoc {
        name: name.clone(),
        fd,
        expand,
        chomp,
        content: String::new(),
    })
}
// ANCHOR_END: heredoc_from_word

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_heredocs_in_a_line() {
        let docs = heredocs_in_line("RUN python3 <<EOF");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].name, "EOF");
        assert!(docs[0].expand && !docs[0].chomp && docs[0].fd == 0);

        let docs = heredocs_in_line("COPY <<A 2<<-B /dir/");
        assert_eq!(
            docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert!(docs[1].chomp);
        assert_eq!(docs[1].fd, 2);

        assert!(heredocs_in_line("RUN echo a<<b").is_empty());
        assert!(heredocs_in_line("RUN echo '<<EOF'").is_empty());
    }

    #[test]
    fn a_quoted_name_turns_expansion_off() {
        assert!(!heredocs_in_line("RUN cat <<'EOF'")[0].expand);
        let doc = &heredocs_in_line("RUN cat <<\"END\"")[0];
        assert_eq!(doc.name, "END");
        assert!(!doc.expand);
    }

    #[test]
    fn chomp_strips_leading_tabs() {
        let doc = Heredoc {
            name: "EOF".into(),
            fd: 0,
            expand: true,
            chomp: true,
            content: "\t\ta\n\tb\n".into(),
        };
        assert_eq!(doc.body(), "a\nb\n");
    }
}
