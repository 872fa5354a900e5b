//! Secret values never leave the host in events or logs: they are replaced before anything is
//! buffered, printed or shipped.

use std::borrow::Cow;
use std::sync::Arc;

const MASK: &str = "[redacted]";
/// Shorter values would mask ordinary text; such secrets are not worth the name anyway.
const MIN_SECRET_LEN: usize = 4;

/// Replaces known secret values. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self {
            secrets: Arc::new(secrets),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for secret in self.secrets.iter() {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), MASK));
            }
        }
        text
    }

    /// Redacts every string (and object key) inside a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(text) => {
                if let Cow::Owned(clean) = self.redact_str(text) {
                    *text = clean;
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|item| self.redact_json(item))
            }
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.redact_json(&mut item);
                    map.insert(self.redact_str(&key).into_owned(), item);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_everywhere_in_json() {
        let redactor = Redactor::new(["sk-live-123456".to_string(), "ab".to_string()]);
        let mut value = serde_json::json!({
            "text": "key is sk-live-123456!",
            "nested": [{"sk-live-123456": "x"}],
            "short": "ab stays",
        });
        redactor.redact_json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("sk-live-123456"), "{text}");
        assert!(text.contains("key is [redacted]!"), "{text}");
        assert!(
            text.contains("ab stays"),
            "too-short secrets are not masked: {text}"
        );
    }
}
