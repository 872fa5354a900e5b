//! Claude Code's `--output-format stream-json --verbose` lines → aac events, as a pure function of
//! the lines (no WIT, no I/O). The mapping table lives in docs/plugins/claude-code.md.

use std::collections::HashMap;

use aac_sdk::events::kinds::{
    AgentPlan, AgentUsage, ChangeKind, FileChange, FileChanged, PlanItem, Status, WellKnown,
};
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

/// The `result` line, which decides how a turn ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultLine {
    pub subtype: String,
    pub is_error: bool,
    pub text: String,
    pub terminal_reason: Option<String>,
    pub api_error_status: Option<u64>,
    /// The result line's `uuid`: the turn's id.
    pub uuid: Option<String>,
}

/// What a turn's stream said so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamState {
    pub session_id: Option<String>,
    pub result: Option<ResultLine>,
}

/// Maps stream-json lines to events; remembers tool calls so their results name them.
#[derive(Debug, Default)]
pub struct Mapper {
    state: StreamState,
    /// tool_use id → (tool name, its input).
    tools: HashMap<String, (String, Value)>,
}

const FILE_TOOLS: &[&str] = &["Write", "Edit", "MultiEdit", "NotebookEdit"];
/// Claude Code's to-do list tool: its input is the plan, as codex's `todo_list` item is.
const PLAN_TOOL: &str = "TodoWrite";

impl Mapper {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> &StreamState {
        &self.state
    }

    /// Maps one stdout line, appending its events to `out`. A line that is not a JSON object is
    /// kept as `output.stdout`.
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
        if let Some(session_id) = value["session_id"].as_str() {
            self.state.session_id = Some(session_id.to_string());
        }
        match value["type"].as_str().unwrap_or_default() {
            "system" => match value["subtype"].as_str().unwrap_or_default() {
                "init" => out.push(Event::new(
                    "agent.thread",
                    json!({
                        "thread_id": value["session_id"],
                        "model": value["model"],
                        "cwd": value["cwd"],
                        "tools": value["tools"],
                    }),
                )),
                "api_retry" => out.push(Event::new("agent.retry", value)),
                _ => out.push(Event::new("agent.system", value)),
            },
            "assistant" => {
                let message = take(&mut value, "message");
                let id = &message["id"];
                for block in message["content"].as_array().into_iter().flatten() {
                    self.map_assistant_block(id, block, out);
                }
            }
            "user" => {
                let message = take(&mut value, "message");
                let tool_output = &value["tool_use_result"];
                for block in message["content"].as_array().into_iter().flatten() {
                    if block["type"] == "tool_result" {
                        self.map_tool_result(block, tool_output, out);
                    }
                }
            }
            "result" => self.map_result(value, out),
            _ => out.push(Event::new("agent.raw", value)),
        }
    }

    fn map_assistant_block(&mut self, message_id: &Value, block: &Value, out: &mut Vec<Event>) {
        match block["type"].as_str().unwrap_or_default() {
            "text" => out.push(Event::new(
                "agent.message",
                json!({ "id": message_id, "text": block["text"] }),
            )),
            "thinking" => out.push(Event::new(
                "agent.reasoning",
                json!({ "id": message_id, "text": block["thinking"] }),
            )),
            "tool_use" => {
                let id = block["id"].as_str().unwrap_or_default().to_string();
                let name = block["name"].as_str().unwrap_or_default().to_string();
                let input = block["input"].clone();
                out.push(if name == "Bash" {
                    Event::new(
                        "command.started",
                        json!({ "id": id, "command": input["command"] }),
                    )
                } else if name == PLAN_TOOL {
                    plan(&id, &input)
                } else {
                    Event::new(
                        "tool.started",
                        json!({ "id": id, "tool": name, "input": input }),
                    )
                });
                self.tools.insert(id, (name, input));
            }
            _ => out.push(Event::new(
                "agent.item",
                json!({ "id": message_id, "block": block }),
            )),
        }
    }

    fn map_tool_result(&mut self, block: &Value, tool_output: &Value, out: &mut Vec<Event>) {
        let id = block["tool_use_id"].as_str().unwrap_or_default();
        let is_error = block["is_error"].as_bool().unwrap_or(false);
        let output = result_text(&block["content"]);
        let (name, input) = self.tools.remove(id).unwrap_or_default();
        out.push(match name.as_str() {
            "Bash" => Event::new(
                "command.completed",
                json!({
                    "id": id,
                    "command": input["command"],
                    "output": output,
                    // Claude Code does not report the command's exit code.
                    "exit_code": null,
                    "status": status(is_error),
                    "stdout": tool_output["stdout"],
                    "stderr": tool_output["stderr"],
                    "interrupted": tool_output["interrupted"],
                    "is_error": is_error,
                }),
            ),
            tool if FILE_TOOLS.contains(&tool) => {
                let path = input["file_path"]
                    .as_str()
                    .or(input["notebook_path"].as_str());
                // Write reports whether it created the file; every other tool edits one.
                let kind = if tool_output["type"] == "create" {
                    ChangeKind::Add
                } else {
                    ChangeKind::Update
                };
                let changed = FileChanged {
                    id: id.to_string(),
                    changes: path
                        .map(|path| FileChange {
                            path: path.to_string(),
                            kind,
                        })
                        .into_iter()
                        .collect(),
                    status: if is_error {
                        Status::Failed
                    } else {
                        Status::Completed
                    },
                };
                let mut payload = serde_json::to_value(changed).unwrap_or_default();
                payload["tool"] = tool.into();
                Event::new(FileChanged::KIND, payload)
            }
            // The plan was its input, already emitted; only a failure says more.
            PLAN_TOOL if !is_error => return,
            tool => Event::new(
                "tool.completed",
                json!({ "id": id, "tool": tool, "output": output, "is_error": is_error }),
            ),
        });
    }

    fn map_result(&mut self, value: Value, out: &mut Vec<Event>) {
        let result = ResultLine {
            subtype: value["subtype"].as_str().unwrap_or_default().to_string(),
            is_error: value["is_error"].as_bool().unwrap_or(false),
            text: value["result"].as_str().unwrap_or_default().to_string(),
            terminal_reason: value["terminal_reason"].as_str().map(String::from),
            api_error_status: value["api_error_status"].as_u64(),
            uuid: value["uuid"].as_str().map(String::from),
        };
        if value["usage"].is_object() {
            out.push(usage(&value));
        }
        out.push(Event::new(
            "agent.result",
            json!({
                "subtype": result.subtype,
                "is_error": result.is_error,
                "result": result.text,
                "terminal_reason": result.terminal_reason,
                "api_error_status": result.api_error_status,
            }),
        ));
        self.state.result = Some(result);
    }
}

/// `agent.plan` from a TodoWrite call's `todos: [{content, status}]`.
fn plan(id: &str, input: &Value) -> Event {
    let items = input["todos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|todo| PlanItem {
            text: todo["content"].as_str().unwrap_or_default().to_string(),
            completed: todo["status"] == "completed",
        })
        .collect();
    let plan = AgentPlan {
        id: Some(id.to_string()),
        items,
    };
    Event::new(
        AgentPlan::KIND,
        serde_json::to_value(plan).unwrap_or_default(),
    )
}

fn status(is_error: bool) -> &'static str {
    if is_error { "failed" } else { "completed" }
}

/// `agent.usage` in the registry's names (OpenTelemetry GenAI). Anthropic counts cache reads and
/// writes apart from `input_tokens`; OpenTelemetry's `input_tokens` includes them.
fn usage(result: &Value) -> Event {
    let usage = &result["usage"];
    let count = |key: &str| usage[key].as_u64();
    let cache_read = count("cache_read_input_tokens");
    let cache_creation = count("cache_creation_input_tokens");
    let input =
        count("input_tokens").unwrap_or(0) + cache_read.unwrap_or(0) + cache_creation.unwrap_or(0);
    let mut payload = serde_json::to_value(AgentUsage {
        input_tokens: input,
        output_tokens: count("output_tokens").unwrap_or(0),
        cache_read_input_tokens: cache_read,
        cache_creation_input_tokens: cache_creation,
        reasoning_output_tokens: None,
        cost_usd: result["total_cost_usd"].as_f64(),
    })
    .unwrap_or_default();
    payload["duration_ms"] = result["duration_ms"].clone();
    payload["num_turns"] = result["num_turns"].clone();
    Event::new(AgentUsage::KIND, payload)
}

/// A tool_result's content: a string, or text blocks joined.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn take(value: &mut Value, key: &str) -> Value {
    value
        .as_object_mut()
        .and_then(|object| object.remove(key))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bash_turn_maps_in_order() {
        let lines = [
            r#"{"type":"system","subtype":"init","cwd":"/workspace","session_id":"s-1","tools":["Bash"],"model":"m"}"#,
            r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"text","text":"writing"},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"echo hi > out.txt"}}]},"session_id":"s-1"}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"","is_error":false}]},"tool_use_result":{"stdout":"","stderr":"","interrupted":false}}"#,
            r#"{"type":"assistant","message":{"id":"msg_2","content":[{"type":"tool_use","id":"toolu_2","name":"Write","input":{"file_path":"/workspace/a.txt","content":"x"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"ok"}]}]}}"#,
            r#"{"session_id":"s-1","usage":{"input_tokens":3,"cache_read_input_tokens":7},"is_error":false,"subtype":"success","result":"done","type":"result","uuid":"u-1","num_turns":2}"#,
        ];
        let mut mapper = Mapper::new();
        let mut events = Vec::new();
        for line in lines {
            mapper.map_line(line, &mut events);
        }
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "agent.thread",
                "agent.message",
                "command.started",
                "command.completed",
                "tool.started",
                "file.changed",
                "agent.usage",
                "agent.result"
            ]
        );
        assert_eq!(events[0].payload["thread_id"], "s-1");
        assert_eq!(events[2].payload["command"], "echo hi > out.txt");
        assert_eq!(events[3].payload["command"], "echo hi > out.txt");
        assert_eq!(
            events[5].payload,
            json!({ "id": "toolu_2", "tool": "Write", "status": "completed",
                    "changes": [{ "path": "/workspace/a.txt", "kind": "update" }] })
        );
        assert_eq!(events[3].payload["status"], "completed");
        assert_eq!(
            events[6].payload,
            json!({ "input_tokens": 10, "output_tokens": 0, "cache_read_input_tokens": 7,
                    "duration_ms": null, "num_turns": 2 })
        );
        let state = mapper.state();
        assert_eq!(state.session_id.as_deref(), Some("s-1"));
        let result = state.result.as_ref().unwrap();
        assert_eq!(result.subtype, "success");
        assert!(!result.is_error);
        assert_eq!(result.uuid.as_deref(), Some("u-1"));
    }

    #[test]
    fn todo_write_is_a_plan_like_codexs() {
        let mut mapper = Mapper::new();
        let mut events = Vec::new();
        mapper.map_line(
            r#"{"type":"assistant","message":{"id":"m","content":[{"type":"tool_use","id":"t1","name":"TodoWrite","input":{"todos":[{"content":"read","status":"completed","activeForm":"reading"},{"content":"fix","status":"pending","activeForm":"fixing"}]}}]}}"#,
            &mut events,
        );
        mapper.map_line(
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#,
            &mut events,
        );
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, "agent.plan");
        assert_eq!(
            events[0].payload,
            json!({ "id": "t1", "items": [{ "text": "read", "completed": true },
                                          { "text": "fix", "completed": false }] })
        );
    }

    #[test]
    fn api_errors_and_unknown_lines() {
        let mut mapper = Mapper::new();
        let mut events = Vec::new();
        mapper.map_line(
            r#"{"type":"system","subtype":"api_retry","attempt":1}"#,
            &mut events,
        );
        mapper.map_line(r#"{"type":"stream_event","event":{}}"#, &mut events);
        mapper.map_line("plain text", &mut events);
        mapper.map_line(
            r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"terminal_reason":"api_error","result":"Failed to authenticate."}"#,
            &mut events,
        );
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            ["agent.retry", "agent.raw", "output.stdout", "agent.result"]
        );
        let result = mapper.state().result.clone().unwrap();
        assert!(result.is_error);
        assert_eq!(result.api_error_status, Some(401));
    }
}
