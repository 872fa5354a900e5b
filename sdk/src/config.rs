//! Reading a backend's JSON configuration (the run's `config-json`, a command's `payload-json`):
//! typed lookups whose errors name the key, so a bad setting reads as one clear message. Pure
//! serde_json, usable in a plugin's native unit tests.

use serde_json::{Map, Value};

/// The JSON object in `text` (empty text is an empty object); `what` names it in errors.
pub fn object(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("the {what} must be a JSON object")),
        Err(err) => Err(format!("the {what} is not valid JSON: {err}")),
    }
}

/// `key` as a string, `None` when absent or null.
pub fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("config `{key}` must be a string")),
    }
}

/// `key` as a non-negative integer, `None` when absent or null.
pub fn number(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("config `{key}` must be a non-negative integer")),
    }
}

/// `key` as an array of strings, empty when absent or null.
pub fn strings(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("config `{key}` must be an array of strings"))
            })
            .collect(),
        Some(_) => Err(format!("config `{key}` must be an array of strings")),
    }
}

/// `env` as `(NAME, value)` pairs, from an object of strings.
pub fn env(map: &Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    match map.get("env") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(vars)) => vars
            .iter()
            .map(|(key, value)| match value.as_str() {
                Some(text) => Ok((key.clone(), text.to_string())),
                None => Err(format!("config env.{key} must be a string")),
            })
            .collect(),
        Some(_) => Err("config `env` must be an object of strings".into()),
    }
}
