//! Codex's `exec --json` JSONL → aac events, as a pure function of the lines (no WIT, no I/O), so
//! it is unit-tested and benchmarked natively as well as run inside the plugin.
//!
//! Lines are read into borrowed structs and every field an event passes on is copied as raw JSON
//! text: no value tree is built and nothing is re-escaped, which keeps allocations (slow inside
//! wasm) to a few per line. The mapping table lives in docs/plugins/codex.md.

use std::borrow::Cow;
use std::fmt::Write;

use aac_sdk::events::kinds::{AgentUsage, WellKnown};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One aac event: a dotted kind and its payload as JSON text.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub payload: String,
}

/// What a turn's stream said about how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamState {
    pub thread_id: Option<String>,
    /// `turn.completed` was seen.
    pub turn_completed: bool,
    /// The message of the last `turn.failed` or top-level `error` line.
    pub error: Option<String>,
}

type Raw<'a> = Option<&'a RawValue>;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    thread_id: Option<String>,
    #[serde(borrow, default)]
    usage: Raw<'a>,
    #[serde(borrow, default)]
    item: Raw<'a>,
    error: Option<ErrorField>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorField {
    message: Option<String>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Raw<'a>,
    #[serde(borrow, default)]
    text: Raw<'a>,
    #[serde(borrow, default)]
    command: Raw<'a>,
    #[serde(borrow, default)]
    aggregated_output: Raw<'a>,
    #[serde(borrow, default)]
    exit_code: Raw<'a>,
    #[serde(borrow, default)]
    status: Raw<'a>,
    #[serde(borrow, default)]
    changes: Raw<'a>,
    #[serde(borrow, default)]
    server: Raw<'a>,
    #[serde(borrow, default)]
    tool: Raw<'a>,
    #[serde(borrow, default)]
    arguments: Raw<'a>,
    #[serde(borrow, default)]
    result: Raw<'a>,
    #[serde(borrow, default)]
    error: Raw<'a>,
    #[serde(borrow, default)]
    query: Raw<'a>,
    #[serde(borrow, default)]
    items: Raw<'a>,
    #[serde(borrow, default)]
    message: Raw<'a>,
}

/// Maps Codex's JSONL lines to events, remembering what decides the turn's status.
#[derive(Debug, Default)]
pub struct Mapper {
    state: StreamState,
}

impl Mapper {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> &StreamState {
        &self.state
    }

    /// Maps one stdout line, appending its events to `out`. A line that is not a JSON object is
    /// kept as `output.stdout`, an object of an unknown shape as `agent.raw`: never dropped.
    pub fn map_line(&mut self, line: &str, out: &mut Vec<Event>) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if !line.starts_with('{') {
            return out.push(text_event("output.stdout", line));
        }
        match serde_json::from_str::<Line>(line) {
            Ok(parsed) => {
                if !self.map_parsed(parsed, out) {
                    out.push(raw_event(line));
                }
            }
            Err(_) if serde_json::from_str::<&RawValue>(line).is_ok() => out.push(raw_event(line)),
            Err(_) => out.push(text_event("output.stdout", line)),
        }
    }

    /// False when the line is not one this mapping knows.
    fn map_parsed(&mut self, line: Line, out: &mut Vec<Event>) -> bool {
        let Some(kind) = line.kind else { return false };
        match kind.as_ref() {
            "thread.started" => {
                let mut payload = Object::new();
                payload.string("thread_id", line.thread_id.as_deref());
                out.push(payload.event("agent.thread"));
                self.state.thread_id = line.thread_id;
            }
            "turn.started" => out.push(Object::new().event("turn.started")),
            "turn.completed" => {
                self.state.turn_completed = true;
                if let Some(usage) = line.usage.and_then(|raw| usage(raw.get())) {
                    out.push(usage);
                }
            }
            "turn.failed" | "error" => {
                let (message, source) = if kind == "error" {
                    (line.message, "error")
                } else {
                    (line.error.and_then(|e| e.message), "turn.failed")
                };
                let message = message.unwrap_or_else(|| "unknown error".into());
                let mut payload = Object::new();
                payload.string("message", Some(&message));
                payload.string("source", Some(source));
                out.push(payload.event("agent.error"));
                self.state.error = Some(message);
            }
            "item.started" | "item.updated" | "item.completed" => {
                let phase = &kind["item.".len()..];
                let Some(raw) = line.item else { return false };
                let Ok(item) = serde_json::from_str::<Item>(raw.get()) else {
                    return false;
                };
                map_item(phase, &item, raw, out);
            }
            _ => return false,
        }
        true
    }
}

fn map_item(phase: &str, item: &Item, raw: &RawValue, out: &mut Vec<Event>) {
    let kind = item.kind.as_deref().unwrap_or_default();
    let completed = phase == "completed";
    let mut p = Object::new();
    p.raw("id", item.id);
    let event = match (kind, phase) {
        ("agent_message", "completed") => {
            p.raw("text", item.text);
            "agent.message"
        }
        ("reasoning", "completed") => {
            p.raw("text", item.text);
            "agent.reasoning"
        }
        ("file_change", "completed") => {
            p.raw("changes", item.changes);
            p.raw("status", item.status);
            "file.changed"
        }
        // Started/updated messages, reasoning and file changes say nothing the completed one
        // does not.
        ("agent_message" | "reasoning" | "file_change", _) => return,
        ("command_execution", "started") => {
            p.raw("command", item.command);
            "command.started"
        }
        ("command_execution", "completed") => {
            p.raw("command", item.command);
            p.raw("exit_code", item.exit_code);
            p.raw("output", item.aggregated_output);
            p.raw("status", item.status);
            "command.completed"
        }
        ("command_execution", _) => return,
        ("mcp_tool_call", _) => {
            for (key, value) in [
                ("server", item.server),
                ("tool", item.tool),
                ("arguments", item.arguments),
                ("result", item.result),
                ("error", item.error),
                ("status", item.status),
            ] {
                p.raw(key, value);
            }
            if completed {
                "tool.completed"
            } else {
                "tool.started"
            }
        }
        ("web_search", _) => {
            p.string("tool", Some("web_search"));
            p.raw("query", item.query);
            if completed {
                "tool.completed"
            } else {
                "tool.started"
            }
        }
        ("todo_list", _) => {
            p.raw("items", item.items);
            "agent.plan"
        }
        // Codex reports non-fatal problems (e.g. a model without catalog metadata) as error items.
        ("error", _) => {
            p.raw("message", item.message);
            "agent.warning"
        }
        _ => {
            p.string("phase", Some(phase));
            p.raw("item", Some(raw));
            "agent.item"
        }
    };
    out.push(p.event(event));
}

/// Codex's token counts, as OpenAI reports them (`input_tokens` includes the cached ones).
#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    cached_input_tokens: Option<u64>,
    reasoning_output_tokens: Option<u64>,
}

/// `agent.usage` in the registry's names (OpenTelemetry GenAI); `None` for no usage object.
fn usage(raw: &str) -> Option<Event> {
    let usage: Usage = serde_json::from_str(raw).ok()?;
    let payload = serde_json::to_string(&AgentUsage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_input_tokens: usage.cached_input_tokens,
        reasoning_output_tokens: usage.reasoning_output_tokens,
        ..AgentUsage::default()
    })
    .ok()?;
    Some(Event {
        kind: AgentUsage::KIND,
        payload,
    })
}

/// Writes a JSON object field by field; keys are fixed names that need no escaping.
struct Object(String);

impl Object {
    fn new() -> Self {
        Object(String::with_capacity(128))
    }

    fn key(&mut self, key: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn raw(&mut self, key: &str, value: Raw) {
        self.key(key);
        self.0.push_str(value.map_or("null", RawValue::get));
    }

    fn string(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            // serde_json escapes the string; writing into a String cannot fail.
            Some(text) => {
                let _ = write!(self.0, "{}", serde_json::Value::from(text));
            }
            None => self.0.push_str("null"),
        }
    }

    fn event(mut self, kind: &'static str) -> Event {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        Event {
            kind,
            payload: self.0,
        }
    }
}

fn text_event(kind: &'static str, text: &str) -> Event {
    let mut payload = Object::new();
    payload.string("text", Some(text));
    payload.event(kind)
}

fn raw_event(line: &str) -> Event {
    Event {
        kind: "agent.raw",
        payload: line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn map_all(lines: &[&str]) -> (Vec<(&'static str, Value)>, StreamState) {
        let mut mapper = Mapper::new();
        let mut out = Vec::new();
        for line in lines {
            mapper.map_line(line, &mut out);
        }
        let events = out
            .into_iter()
            .map(|e| {
                let payload = serde_json::from_str(&e.payload)
                    .unwrap_or_else(|err| panic!("{} payload {:?}: {err}", e.kind, e.payload));
                (e.kind, payload)
            })
            .collect();
        (events, mapper.state().clone())
    }

    #[test]
    fn a_shell_turn_maps_in_order() {
        let (events, state) = map_all(&[
            r#"{"type":"thread.started","thread_id":"t-1"}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/sh -lc 'echo hi > out.txt'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/sh -lc 'echo hi > out.txt'","aggregated_output":"a \"quoted\"\nline","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"done \u00e9"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":20,"cached_input_tokens":0,"output_tokens":5}}"#,
        ]);
        let kinds: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                "agent.thread",
                "turn.started",
                "command.started",
                "command.completed",
                "agent.message",
                "agent.usage"
            ]
        );
        assert_eq!(events[0].1, json!({ "thread_id": "t-1" }));
        assert_eq!(events[1].1, json!({}));
        assert_eq!(
            events[3].1,
            json!({ "id": "item_0", "command": "/bin/sh -lc 'echo hi > out.txt'",
                    "exit_code": 0, "output": "a \"quoted\"\nline", "status": "completed" })
        );
        assert_eq!(events[4].1, json!({ "id": "item_1", "text": "done é" }));
        assert_eq!(
            events[5].1,
            json!({ "input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 0 })
        );
        assert_eq!(state.thread_id.as_deref(), Some("t-1"));
        assert!(state.turn_completed);
        assert_eq!(state.error, None);
    }

    #[test]
    fn failures_are_remembered() {
        let (events, state) = map_all(&[
            r#"{"type":"error","message":"stream \"disconnected\""}"#,
            r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}"#,
        ]);
        assert_eq!(
            events,
            [
                (
                    "agent.error",
                    json!({ "message": "stream \"disconnected\"", "source": "error" })
                ),
                (
                    "agent.error",
                    json!({ "message": "unexpected status 401 Unauthorized", "source": "turn.failed" })
                ),
            ]
        );
        assert_eq!(
            state.error.as_deref(),
            Some("unexpected status 401 Unauthorized")
        );
        assert!(!state.turn_completed);
    }

    #[test]
    fn other_items_and_lines_are_kept() {
        let (events, _) = map_all(&[
            r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"a.rs","kind":"add"}],"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"e","type":"error","message":"Model metadata not found"}}"#,
            r#"{"type":"item.started","item":{"id":"m","type":"mcp_tool_call","server":"s","tool":"t","status":"in_progress"}}"#,
            r#"{"type":"item.updated","item":{"id":"p","type":"todo_list","items":[{"text":"x","completed":false}]}}"#,
            r#"{"type":"item.completed","item":{"id":"n","type":"something_new"}}"#,
            r#"{"type":"session.configured","x":1}"#,
            r#"{"no_type":true}"#,
            "not json at all",
            "{broken json",
            "",
        ]);
        let kinds: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                "file.changed",
                "agent.warning",
                "tool.started",
                "agent.plan",
                "agent.item",
                "agent.raw",
                "agent.raw",
                "output.stdout",
                "output.stdout"
            ]
        );
        assert_eq!(events[0].1["changes"][0]["path"], "a.rs");
        assert_eq!(events[1].1["message"], "Model metadata not found");
        assert_eq!(events[2].1["server"], "s");
        assert_eq!(events[3].1["items"][0]["text"], "x");
        assert_eq!(events[4].1["item"]["type"], "something_new");
        assert_eq!(events[5].1, json!({"type": "session.configured", "x": 1}));
        assert_eq!(events[7].1["text"], "not json at all");
    }
}
