//! The last lines of a stream (usually stderr), bounded in count and size, to explain a crash.

use std::collections::VecDeque;

/// Keeps the last `max_lines` lines, each cut to `max_line_bytes` (with a `…`), so a process
/// printing megabytes of stderr costs a few hundred bytes.
#[derive(Clone, Debug)]
pub struct Tail {
    lines: VecDeque<String>,
    max_lines: usize,
    max_line_bytes: usize,
}

impl Default for Tail {
    /// Five lines of at most 512 bytes: what fits in a failure message.
    fn default() -> Self {
        Self::new(5, 512)
    }
}

impl Tail {
    pub fn new(max_lines: usize, max_line_bytes: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(max_lines),
            max_lines,
            max_line_bytes,
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.max_lines == 0 {
            return;
        }
        if self.lines.len() == self.max_lines {
            self.lines.pop_front();
        }
        let (kept, cut) = aac_event_bounds::cut_text(line, self.max_line_bytes);
        self.lines.push_back(if cut > 0 {
            format!("{kept}…")
        } else {
            kept.to_string()
        });
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The kept lines joined with `" | "`, oldest first; empty when nothing was pushed.
    pub fn joined(&self) -> String {
        Vec::from(self.lines.clone()).join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_each_cut() {
        let mut tail = Tail::new(2, 4);
        for line in ["one", "two", "three", "é€ok"] {
            tail.push(line);
        }
        assert_eq!(tail.joined(), "thre… | é…");
    }
}
