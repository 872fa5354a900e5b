//! Scripted replies of the Anthropic Messages API (`POST /v1/messages`, server-sent events), in the
//! shape Claude Code 2.1.330 consumes.

use serde_json::{Value, json};

use crate::mock_http::{MockServer, Reply, sandbox_host_address};

pub const MESSAGES_PATH: &str = "/v1/messages";

/// A mock Messages API on the Docker bridge; `ANTHROPIC_BASE_URL` is `server.base_url()`.
pub async fn start() -> MockServer {
    MockServer::start(sandbox_host_address().await, &[MESSAGES_PATH]).await
}

fn event(data: Value) -> (String, Value) {
    (data["type"].as_str().expect("event type").to_string(), data)
}

fn message_start() -> (String, Value) {
    event(
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude-mock", "content": [], "stop_reason": null,
        "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )
}

fn message_end(stop_reason: &str) -> [(String, Value); 2] {
    [
        event(
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason},
            "usage": {"output_tokens": 5}}),
        ),
        event(json!({"type": "message_stop"})),
    ]
}

/// The assistant answers `text`.
pub fn text(text: &str) -> Reply {
    let mut events = vec![
        message_start(),
        event(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        event(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}})),
        event(json!({"type": "content_block_stop", "index": 0})),
    ];
    events.extend(message_end("end_turn"));
    Reply::Sse(events)
}

/// The assistant calls the `Bash` tool with `command`.
pub fn bash_call(id: &str, command: &str) -> Reply {
    tool_call(id, "Bash", json!({ "command": command }))
}

/// The assistant calls the tool `name` with `input`.
pub fn tool_call(id: &str, name: &str, input: Value) -> Reply {
    let input = input.to_string();
    let mut events = vec![
        message_start(),
        event(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})),
        event(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": input}})),
        event(json!({"type": "content_block_stop", "index": 0})),
    ];
    events.extend(message_end("tool_use"));
    Reply::Sse(events)
}

fn half_text() -> Vec<(String, Value)> {
    vec![
        message_start(),
        event(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        event(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "half"}})),
    ]
}

/// A stream cut in the middle of a text block.
pub fn broken() -> Reply {
    Reply::Broken(half_text())
}

/// A message that starts and then never says another word.
pub fn stall() -> Reply {
    Reply::Stall(half_text())
}

/// An HTTP 500 with an Anthropic-style error body.
pub fn server_error() -> Reply {
    Reply::Status(
        500,
        json!({"type": "error", "error": {"type": "api_error", "message": "mock overloaded"}}),
    )
}

/// Every text in a request's `messages` (text blocks and tool results), in order.
pub fn message_texts(body: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(text) => texts.push(text.clone()),
            Value::Array(blocks) => {
                for block in blocks {
                    if let Some(text) = block["text"].as_str() {
                        texts.push(text.to_string());
                    }
                    if block["type"] == "tool_use" {
                        texts.push(block["input"].to_string());
                    }
                    match &block["content"] {
                        Value::String(text) => texts.push(text.clone()),
                        Value::Array(parts) => texts.extend(
                            parts
                                .iter()
                                .filter_map(|p| p["text"].as_str().map(String::from)),
                        ),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    texts
}
