//! The event registry (`wit/events.schema.json`, docs/events.md): every event a first-party agent
//! backend emits must be of a registered kind, with a payload its kind's schema accepts.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aac_host::outcome::TurnEvent;
use serde_json::Value;

/// The registry's `$defs`: kind → schema.
fn kinds() -> &'static BTreeMap<String, Value> {
    static KINDS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/events.schema.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"));
        let schema: Value =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
        let defs = schema["$defs"].as_object().expect("the registry has $defs");
        defs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    })
}

/// Every problem with `events`, one line each: an unregistered kind, or a payload its kind's
/// schema refuses (naming the field). A payload the size bound replaced by a preview is exempt.
pub fn violations<'a>(events: impl IntoIterator<Item = &'a TurnEvent>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut validators = BTreeMap::new();
    for event in events {
        let Some(schema) = kinds().get(&event.kind) else {
            problems.push(format!(
                "event #{} has kind `{}`, which is not in the registry",
                event.seq, event.kind
            ));
            continue;
        };
        if event.payload.get("preview").is_some() && event.payload["truncated"] == true {
            continue;
        }
        let validator = validators.entry(event.kind.clone()).or_insert_with(|| {
            jsonschema::validator_for(schema)
                .unwrap_or_else(|err| panic!("the schema of `{}` is invalid: {err}", event.kind))
        });
        for error in validator.iter_errors(&event.payload) {
            problems.push(format!(
                "event #{} `{}` at `{}`: {error} (payload {})",
                event.seq,
                event.kind,
                error.instance_path(),
                event.payload
            ));
        }
    }
    problems
}

/// Panics listing every [`violations`] of `events`.
pub fn assert_registered<'a>(events: impl IntoIterator<Item = &'a TurnEvent>) {
    let problems = violations(events);
    assert!(
        problems.is_empty(),
        "events outside the registry (docs/events.md):\n{}",
        problems.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: Value) -> TurnEvent {
        TurnEvent {
            seq: 1,
            command_id: "cmd-1".into(),
            kind: kind.into(),
            payload,
            attempt_id: None,
            emitted_at_ms: None,
            received_at_ms: None,
        }
    }

    #[test]
    fn the_registry_refuses_what_it_should() {
        let ok = event(
            "file.changed",
            serde_json::json!({"id": "1", "changes": [{"path": "a", "kind": "add"}], "status": "completed"}),
        );
        assert!(violations([&ok]).is_empty(), "{:?}", violations([&ok]));
        let old_shape = event(
            "file.changed",
            serde_json::json!({"id": "1", "tool": "Write", "path": "a", "is_error": false}),
        );
        let problems = violations([&old_shape]);
        assert!(
            problems.iter().any(|p| p.contains("changes")),
            "{problems:?}"
        );
        let unknown = event("made.up", serde_json::json!({}));
        assert!(violations([&unknown])[0].contains("not in the registry"));
        let usage = event(
            "agent.usage",
            serde_json::json!({"input_tokens": -1, "output_tokens": 2}),
        );
        assert!(
            violations([&usage])[0].contains("input_tokens"),
            "{:?}",
            violations([&usage])
        );
    }
}
