//! Codex's `exec --json` JSONL → aac events, as a pure function of the lines (no WIT, no I/O), so
//! it is unit-tested and benchmarked natively as well as run inside the plugin.
//!
//! The mapping table lives in docs/plugins/codex.md.

use serde_json::{Value, json};

/// One aac event: a dotted kind and a JSON payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub payload: Value,
}

impl Event {
    fn new(kind: &'static str, payload: Value) -> Self {
        Self { kind, payload }
    }
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
    /// kept as `output.stdout`, never dropped.
    pub fn map_line(&mut self, line: &str, out: &mut Vec<Event>) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => self.map_value(value, out),
            _ => out.push(Event::new("output.stdout", json!({ "text": line }))),
        }
    }

    fn map_value(&mut self, mut value: Value, out: &mut Vec<Event>) {
        let kind = value["type"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "thread.started" => {
                let thread_id = value["thread_id"].as_str().map(String::from);
                self.state.thread_id.clone_from(&thread_id);
                out.push(Event::new(
                    "agent.thread",
                    json!({ "thread_id": thread_id }),
                ));
            }
            "turn.started" => out.push(Event::new("turn.started", json!({}))),
            "turn.completed" => {
                self.state.turn_completed = true;
                out.push(Event::new("agent.usage", take(&mut value, "usage")));
            }
            "turn.failed" => {
                let message = text(&value["error"]["message"]);
                self.state.error = Some(message.clone());
                out.push(Event::new(
                    "agent.error",
                    json!({ "message": message, "source": "turn.failed" }),
                ));
            }
            "error" => {
                let message = text(&value["message"]);
                self.state.error = Some(message.clone());
                out.push(Event::new(
                    "agent.error",
                    json!({ "message": message, "source": "error" }),
                ));
            }
            "item.started" | "item.updated" | "item.completed" => {
                let phase = &kind["item.".len()..];
                map_item(phase, take(&mut value, "item"), out);
            }
            _ => out.push(Event::new("agent.raw", value)),
        }
    }
}

fn map_item(phase: &str, mut item: Value, out: &mut Vec<Event>) {
    let id = take(&mut item, "id");
    let item_type = item["type"].as_str().unwrap_or_default().to_string();
    let completed = phase == "completed";
    match (item_type.as_str(), phase) {
        ("agent_message", "completed") => out.push(Event::new(
            "agent.message",
            json!({ "id": id, "text": take(&mut item, "text") }),
        )),
        ("reasoning", "completed") => out.push(Event::new(
            "agent.reasoning",
            json!({ "id": id, "text": take(&mut item, "text") }),
        )),
        ("agent_message" | "reasoning", _) => {}
        ("command_execution", "started") => out.push(Event::new(
            "command.started",
            json!({ "id": id, "command": take(&mut item, "command") }),
        )),
        ("command_execution", "completed") => out.push(Event::new(
            "command.completed",
            json!({
                "id": id,
                "command": take(&mut item, "command"),
                "exit_code": take(&mut item, "exit_code"),
                "output": take(&mut item, "aggregated_output"),
                "status": take(&mut item, "status"),
            }),
        )),
        ("command_execution", _) => {}
        ("file_change", "completed") => out.push(Event::new(
            "file.changed",
            json!({
                "id": id,
                "changes": take(&mut item, "changes"),
                "status": take(&mut item, "status"),
            }),
        )),
        ("file_change", _) => {}
        ("mcp_tool_call", _) => out.push(Event::new(
            if completed {
                "tool.completed"
            } else {
                "tool.started"
            },
            json!({
                "id": id,
                "server": take(&mut item, "server"),
                "tool": take(&mut item, "tool"),
                "arguments": take(&mut item, "arguments"),
                "result": take(&mut item, "result"),
                "error": take(&mut item, "error"),
                "status": take(&mut item, "status"),
            }),
        )),
        ("web_search", _) => out.push(Event::new(
            if completed {
                "tool.completed"
            } else {
                "tool.started"
            },
            json!({ "id": id, "tool": "web_search", "query": take(&mut item, "query") }),
        )),
        ("todo_list", _) => out.push(Event::new(
            "agent.plan",
            json!({ "id": id, "items": take(&mut item, "items") }),
        )),
        // Codex reports non-fatal problems (e.g. a model without catalog metadata) as error items.
        ("error", _) => out.push(Event::new(
            "agent.warning",
            json!({ "id": id, "message": take(&mut item, "message") }),
        )),
        _ => out.push(Event::new(
            "agent.item",
            json!({ "id": id, "phase": phase, "item": item }),
        )),
    }
}

/// Moves a field out of a JSON object (`null` when absent).
fn take(value: &mut Value, key: &str) -> Value {
    value
        .as_object_mut()
        .and_then(|object| object.remove(key))
        .unwrap_or(Value::Null)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "unknown error".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(lines: &[&str]) -> (Vec<Event>, StreamState) {
        let mut mapper = Mapper::new();
        let mut out = Vec::new();
        for line in lines {
            mapper.map_line(line, &mut out);
        }
        (out, mapper.state().clone())
    }

    #[test]
    fn a_shell_turn_maps_in_order() {
        let (events, state) = map_all(&[
            r#"{"type":"thread.started","thread_id":"t-1"}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/sh -lc 'echo hi > out.txt'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/sh -lc 'echo hi > out.txt'","aggregated_output":"","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"done"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":20,"cached_input_tokens":0,"output_tokens":5}}"#,
        ]);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
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
        assert_eq!(events[0].payload["thread_id"], "t-1");
        assert_eq!(events[3].payload["exit_code"], 0);
        assert_eq!(events[4].payload, json!({ "id": "item_1", "text": "done" }));
        assert_eq!(events[5].payload["input_tokens"], 20);
        assert_eq!(state.thread_id.as_deref(), Some("t-1"));
        assert!(state.turn_completed);
        assert_eq!(state.error, None);
    }

    #[test]
    fn failures_are_remembered() {
        let (events, state) = map_all(&[
            r#"{"type":"error","message":"stream disconnected"}"#,
            r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}"#,
        ]);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.kind == "agent.error"));
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
            "not json at all",
            "",
        ]);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "file.changed",
                "agent.warning",
                "tool.started",
                "agent.plan",
                "agent.item",
                "agent.raw",
                "output.stdout"
            ]
        );
        assert_eq!(events[0].payload["changes"][0]["path"], "a.rs");
        assert_eq!(events[4].payload["item"]["type"], "something_new");
        assert_eq!(events[6].payload["text"], "not json at all");
    }
}
