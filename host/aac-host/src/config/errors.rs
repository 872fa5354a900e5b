//! Errors that point into `aac.toml`: file, 1-based line and dotted key path.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// A configuration error, displayed as `aac.toml:7: runtimes.codex.sandbox.memory: message`.
///
/// Functions of this module return it inside an `anyhow::Error`; callers that want the parts can
/// `downcast_ref::<ConfigError>()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file, as it was given.
    pub file: PathBuf,
    /// 1-based line of the offending key or value, when there is one.
    pub line: Option<usize>,
    /// Dotted path of the offending key, e.g. `runtimes.codex.versions."0.169".image`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A key as it is written in a dotted path: bare when TOML allows it, quoted otherwise.
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// Joins key segments into a dotted path, quoting those that need it.
pub(crate) fn key_path(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|segment| key_segment(segment))
        .collect::<Vec<_>>()
        .join(".")
}

/// Turns a toml error into a [`ConfigError`]: its span becomes a line, and the innermost key or
/// value of the document that contains the span becomes the key path.
pub(crate) fn from_toml(error: &toml::de::Error, text: &str, file: PathBuf) -> ConfigError {
    let span = error.span();
    let mut message = error.message().trim_end().to_string();
    let key = span.clone().and_then(|span| key_path_at(text, span));
    // The document cannot hold the second of two equal keys, so name it from the text.
    if let (None, Some(span), "duplicate key") = (&key, &span, message.as_str())
        && let Some(name) = text
            .get(span.clone())
            .filter(|name| !name.is_empty() && !name.contains('\n'))
    {
        message = format!("duplicate key `{name}`");
    }
    ConfigError {
        file,
        line: span.map(|span| line_of(text, span.start)),
        key,
        message,
    }
}

/// The dotted path of the smallest key or value whose span contains `target`.
fn key_path_at(text: &str, target: Range<usize>) -> Option<String> {
    // Recoverable: a duplicate key or a syntax error further on still leaves the keys before it.
    let (document, _) = DeTable::parse_recoverable(text);
    let mut finder = Finder {
        target,
        best: None,
        path: Vec::new(),
    };
    finder.table(document.get_ref());
    finder.best.map(|(_, path)| path)
}

struct Finder {
    target: Range<usize>,
    /// Length of the best span so far, and its path.
    best: Option<(usize, String)>,
    path: Vec<String>,
}

impl Finder {
    fn table(&mut self, table: &DeTable<'_>) {
        for (key, value) in table {
            self.path.push(key_segment(key.get_ref()));
            self.consider(key.span());
            self.value(value.get_ref(), value.span());
            self.path.pop();
        }
    }

    fn value(&mut self, value: &DeValue<'_>, span: Range<usize>) {
        self.consider(span);
        match value {
            DeValue::Table(table) => self.table(table),
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let last = self.path.pop().unwrap_or_default();
                    self.path.push(format!("{last}[{index}]"));
                    self.value(item.get_ref(), item.span());
                    self.path.pop();
                    self.path.push(last);
                }
            }
            _ => {}
        }
    }

    /// Keeps the current path if `span` contains the target and is no larger than the best so
    /// far (so, among equal spans, the deeper key wins).
    fn consider(&mut self, span: Range<usize>) {
        let contains = span.start <= self.target.start && self.target.end <= span.end;
        if !contains || self.path.is_empty() {
            return;
        }
        let len = span.end - span.start;
        if self.best.as_ref().is_none_or(|(best, _)| len <= *best) {
            self.best = Some((len, self.path.join(".")));
        }
    }
}
