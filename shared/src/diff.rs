//! Showing a change before making it: a unified diff (coloured on a terminal) and a `[y/N]` question.
//!
//! Knows nothing of what is being changed; callers render both sides as text. The question is asked on
//! stderr so stdout stays data, and is never asked of a pipe: without a terminal the caller must have
//! been told `--yes`, otherwise we refuse rather than block or guess.

use std::io::{self, BufRead, IsTerminal, Write};

use similar::{ChangeTag, TextDiff};

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// A `diff -u` style diff of two texts, with `---`/`+++` headers; empty when they are equal.
///
/// With `color`, removed lines are red, added lines green and hunk headers cyan, like `git diff`.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, color: bool) -> String {
    if old == new {
        return String::new();
    }
    let diff = TextDiff::from_lines(old, new);
    let mut udiff = diff.unified_diff();
    udiff.context_radius(3).header(old_name, new_name);
    if !color {
        return udiff.to_string();
    }
    let mut out = format!("{BOLD}--- {old_name}{RESET}\n{BOLD}+++ {new_name}{RESET}\n");
    for hunk in udiff.iter_hunks() {
        out.push_str(&format!("{CYAN}{}{RESET}\n", hunk.header()));
        for change in hunk.iter_changes() {
            let (sign, colour) = match change.tag() {
                ChangeTag::Delete => ('-', RED),
                ChangeTag::Insert => ('+', GREEN),
                ChangeTag::Equal => (' ', ""),
            };
            let line = change.value().trim_end_matches('\n');
            if colour.is_empty() {
                out.push_str(&format!("{sign}{line}\n"));
            } else {
                out.push_str(&format!("{colour}{sign}{line}{RESET}\n"));
            }
        }
    }
    out
}

/// Whether stdout should get colour: a terminal, and `NO_COLOR` unset (<https://no-color.org>).
pub fn stdout_wants_color() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Why no answer could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// stdin is not a terminal and `--yes` was not given.
    #[error(
        "refusing to {action} without confirmation: stdin is not a terminal (re-run with --yes to proceed)"
    )]
    NotATerminal {
        /// What would have been done (`patch Seed kubermatic/hamburg`).
        action: String,
    },
}

/// Asks `<question> [y/N]: ` on stderr; only `y`/`yes` (any case) is yes, a read error or EOF is no.
///
/// `yes` answers without asking. Without a terminal on stdin and without `yes`, refuses.
pub fn confirm(question: &str, action: &str, yes: bool) -> Result<bool, ConfirmError> {
    if yes {
        return Ok(true);
    }
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(ConfirmError::NotATerminal {
            action: action.to_string(),
        });
    }
    Ok(ask(question, &mut stdin.lock(), &mut io::stderr()))
}

/// The question/answer exchange itself, on any reader and writer.
pub fn ask(question: &str, input: &mut dyn BufRead, prompt: &mut dyn Write) -> bool {
    let _ = write!(prompt, "{question} [y/N]: ");
    let _ = prompt.flush();
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(n) if n > 0 => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_diff_is_unified() {
        let d = unified("a: 1\nb: 2\n", "a: 1\nb: 3\n", "LIVE", "MERGED", false);
        assert_eq!(d, "--- LIVE\n+++ MERGED\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n");
        assert_eq!(unified("x\n", "x\n", "a", "b", false), "");
    }

    #[test]
    fn coloured_diff_marks_lines() {
        let d = unified("a: 1\nb: 2\n", "a: 1\nb: 3\n", "LIVE", "MERGED", true);
        assert!(d.contains(&format!("{RED}-b: 2{RESET}\n")), "{d:?}");
        assert!(d.contains(&format!("{GREEN}+b: 3{RESET}\n")), "{d:?}");
        assert!(d.contains(" a: 1\n"));
    }

    #[test]
    fn only_y_is_yes() {
        for (answer, want) in [
            ("y\n", true),
            ("YES\n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
            ("yep\n", false),
        ] {
            let mut prompt = Vec::new();
            assert_eq!(
                ask("Go?", &mut answer.as_bytes(), &mut prompt),
                want,
                "{answer:?}"
            );
            assert_eq!(prompt, b"Go? [y/N]: ");
        }
    }
}
