//! Text a plugin supplied, on its way to a message, a log line, the manager or a terminal: cut to a
//! bound with a marker saying how much was dropped, and stripped of terminal control sequences.

use std::borrow::Cow;

/// `text` cut to at most `max` bytes (on a character boundary) plus a marker naming how many bytes
/// were dropped; unchanged when it fits.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}…[cut: {} more bytes]",
        &text[..end],
        text.len() - end
    ))
}

/// `text` with every control character but newline and tab written as a visible escape (`\u{1b}`),
/// so a plugin cannot clear, recolour or retitle the operator's terminal.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            safe.push_str(&c.escape_unicode().to_string());
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// Longest plugin name or version kept: they appear in every message about the plugin.
pub const MAX_IDENTITY_BYTES: usize = 128;

/// A plugin's self-declared name or version, as the host shows it: printable and short.
pub fn identity_part(text: &str) -> String {
    terminal_safe(&cut(text, MAX_IDENTITY_BYTES)).into_owned()
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_count() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("abcdef", 3), "abc…[cut: 3 more bytes]");
        // 'é' is two bytes: the cut moves back rather than split it.
        assert_eq!(cut("aé", 2), "a…[cut: 2 more bytes]");
    }

    #[test]
    fn identity_parts_are_short_and_printable() {
        assert_eq!(identity_part("codex"), "codex");
        assert_eq!(identity_part("a\u{1b}[2J"), "a\\u{1b}[2J");
        assert!(identity_part(&"n".repeat(1000)).len() < 200);
    }

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            terminal_safe("\u{1b}[2Jgone\u{7}\u{9b}31m\r"),
            "\\u{1b}[2Jgone\\u{7}\\u{9b}31m\\u{d}"
        );
    }
}
