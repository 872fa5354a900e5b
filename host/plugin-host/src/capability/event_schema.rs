//! The event registry (`wit/events.schema.json`) checked by the host in debug and test builds: a
//! well-known kind whose payload breaks its schema is logged as a warning and counted, never
//! refused (a release build does not check at all). The registry uses a small part of JSON
//! Schema (`type`, `required`, `properties`, `items`, `enum`, `minimum`, `maximum`), which is all
//! this checks. Problems name the field and what was expected, never the value (it may be secret).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The registry, compiled into the host from the contract's own file.
const REGISTRY: &str = include_str!("../../../../wit/events.schema.json");

/// Kind → payload schema, from the registry's `$defs`.
fn kinds() -> &'static BTreeMap<String, Value> {
    static KINDS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let schema: Value = serde_json::from_str(REGISTRY).unwrap_or_default();
        schema["$defs"]
            .as_object()
            .map(|defs| defs.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    })
}

/// Whether `kind` is in the registry.
pub fn is_well_known(kind: &str) -> bool {
    kinds().contains_key(kind)
}

/// The first way `payload` breaks the schema of `kind`, naming the field (`$.input_tokens`).
/// `Ok` for a kind outside the registry (a backend may add its own) and for a payload the size
/// bound replaced by a preview.
pub fn check(kind: &str, payload: &Value) -> Result<(), String> {
    let Some(schema) = kinds().get(kind) else {
        return Ok(());
    };
    if payload.get("preview").is_some() && payload["truncated"] == true {
        return Ok(());
    }
    check_value(schema, payload, "$")
}

fn check_value(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(expected) = schema.get("type") {
        let names: Vec<&str> = match expected {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.is_empty() && !names.iter().any(|name| has_type(value, name)) {
            return Err(format!(
                "{at} is {}, expected {}",
                type_name(value),
                names.join(" or ")
            ));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("{at} is not one of {}", listed.join(", ")));
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && number < min
        {
            return Err(format!("{at} is below its minimum {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && number > max
        {
            return Err(format!("{at} is above its maximum {max}"));
        }
    }
    if let Value::Object(fields) = value {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(required) {
                return Err(format!("{at} lacks the required field `{required}`"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, field_schema) in properties {
                if let Some(field) = fields.get(name) {
                    check_value(field_schema, field, &format!("{at}.{name}"))?;
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check_value(item_schema, item, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_registry_is_compiled_in() {
        assert!(is_well_known("agent.usage"));
        assert!(is_well_known("process.exited"));
        assert!(!is_well_known("acme.custom"));
    }

    #[test]
    fn a_bad_usage_payload_names_its_field_not_its_value() {
        let ok = json!({"input_tokens": 10, "output_tokens": 2, "extra": "allowed"});
        assert_eq!(check("agent.usage", &ok), Ok(()));
        let err = check(
            "agent.usage",
            &json!({"input_tokens": "s3cret", "output_tokens": 2}),
        )
        .unwrap_err();
        assert_eq!(err, "$.input_tokens is a string, expected integer");
        let err = check("agent.usage", &json!({"input_tokens": 1})).unwrap_err();
        assert_eq!(err, "$ lacks the required field `output_tokens`");
        let err = check(
            "agent.usage",
            &json!({"input_tokens": -1, "output_tokens": 2}),
        )
        .unwrap_err();
        assert!(
            err.starts_with("$.input_tokens is below its minimum"),
            "{err}"
        );
        assert!(check("agent.usage", &json!("text")).is_err());
    }

    #[test]
    fn unknown_kinds_and_cut_payloads_pass() {
        assert_eq!(check("acme.custom", &json!(42)), Ok(()));
        let cut = json!({"truncated": true, "original_bytes": 9, "preview": "…"});
        assert_eq!(check("agent.usage", &cut), Ok(()));
    }
}
