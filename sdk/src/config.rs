//! A backend's configuration, typed. The host hands a run its config (`run.config_json`: the
//! runtime profile's `backend_config` with the run's own `config` over it, key by key); each
//! command's `payload_json` may override any top-level key for that turn. [`parse`] merges the two
//! the same way and deserializes the result into the backend's own settings type, with errors that
//! name the key. Pure serde_json: usable in a plugin's native unit tests.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The run config with the command payload over it (top-level keys; a `null` at the top level
/// means "unset", so the field's default applies), as `T`.
///
/// ```
/// #[derive(Debug, serde::Deserialize)]
/// struct Settings {
///     model: Option<String>,
///     #[serde(default)]
///     env: std::collections::BTreeMap<String, String>,
/// }
/// let settings: Settings =
///     aac_sdk::config::parse(r#"{"model": "a", "env": {"X": "1"}}"#, r#"{"model": "b"}"#).unwrap();
/// assert_eq!(settings.model.as_deref(), Some("b"));
/// let err = aac_sdk::config::parse::<Settings>(r#"{"env": {"X": 1}}"#, "").unwrap_err();
/// assert!(err.contains("config `env.X`"), "{err}");
/// ```
pub fn parse<T: DeserializeOwned>(config_json: &str, payload_json: &str) -> Result<T, String> {
    let mut merged = object(config_json, "run config")?;
    merged.extend(object(payload_json, "command payload")?);
    merged.retain(|_, value| !value.is_null());
    serde_path_to_error::deserialize(Value::Object(merged)).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // serde names a missing field in the message and its parent in the path.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            if path == "." {
                format!("config `{field}` is required")
            } else {
                format!("config `{path}.{field}` is required")
            }
        } else if path == "." {
            format!("config: {message}")
        } else {
            format!("config `{path}`: {message}")
        }
    })
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Settings {
        #[serde(default = "default_binary")]
        binary: String,
        timeout_ms: Option<u64>,
        provider: Option<Provider>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Provider {
        base_url: String,
    }

    fn default_binary() -> String {
        "agent".into()
    }

    #[test]
    fn the_payload_overrides_and_null_unsets() {
        let settings: Settings = parse(
            r#"{"binary": "a", "timeout_ms": 5, "env": {"A": "1"}}"#,
            r#"{"binary": null, "timeout_ms": 7}"#,
        )
        .unwrap();
        assert_eq!(settings.binary, "agent");
        assert_eq!(settings.timeout_ms, Some(7));
        assert_eq!(settings.env["A"], "1");
        assert_eq!(parse::<Settings>("", "").unwrap().binary, "agent");
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse::<Settings>(r#"{"timeout_ms": "soon"}"#, "").unwrap_err();
        assert!(
            err.starts_with("config `timeout_ms`: invalid type"),
            "{err}"
        );
        let err = parse::<Settings>(r#"{"provider": {}}"#, "").unwrap_err();
        assert_eq!(err, "config `provider.base_url` is required");
        let err = parse::<Settings>("[1]", "").unwrap_err();
        assert_eq!(err, "the run config must be a JSON object");
        let err = parse::<Settings>("{}", "{oops").unwrap_err();
        assert!(
            err.starts_with("the command payload is not valid JSON"),
            "{err}"
        );
    }
}
