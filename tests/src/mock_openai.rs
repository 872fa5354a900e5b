//! Scripted replies of the OpenAI Responses API (`POST /v1/responses`, server-sent events), in the
//! shape Codex 0.169 consumes.

use serde_json::{Value, json};

use crate::mock_http::{MockServer, Reply, sandbox_host_address};

pub const RESPONSES_PATH: &str = "/v1/responses";

/// A mock Responses API on the Docker bridge; Codex's provider `base_url` is
/// `format!("{}/v1", server.base_url())`.
pub async fn start() -> MockServer {
    MockServer::start(sandbox_host_address().await, &[RESPONSES_PATH]).await
}

/// The codex plugin's backend config for this mock: its provider, a test key in the sandbox's
/// environment, no retries (a failure shows at once), and an idle watchdog as a safety net only.
pub fn codex_config(server: &MockServer) -> Value {
    json!({
        "model": "mock-model",
        "provider": {
            "base_url": format!("{}/v1", server.base_url()),
            "env_key": "MOCK_API_KEY",
            "request_max_retries": 0,
            "stream_max_retries": 0,
        },
        "env": { "MOCK_API_KEY": "test-key" },
        "idle_timeout_ms": 120_000,
    })
}

fn event(data: Value) -> (String, Value) {
    (data["type"].as_str().expect("event type").to_string(), data)
}

fn created() -> (String, Value) {
    event(json!({"type": "response.created", "response": {"id": "resp_1"}}))
}

fn message_started() -> (String, Value) {
    event(
        json!({"type": "response.output_item.added", "output_index": 0,
        "item": {"type": "message", "role": "assistant", "id": "msg_1", "status": "in_progress", "content": []}}),
    )
}

fn completed() -> (String, Value) {
    event(
        json!({"type": "response.completed", "response": {"id": "resp_1", "usage": {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}}}),
    )
}

/// The assistant answers `text`.
pub fn text(text: &str) -> Reply {
    Reply::Sse(vec![
        created(),
        message_started(),
        event(
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": text}),
        ),
        event(
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}}),
        ),
        completed(),
    ])
}

/// The assistant calls Codex's shell tool (`exec_command`) with `cmd`.
pub fn shell_call(call_id: &str, cmd: &str) -> Reply {
    let arguments = json!({ "cmd": cmd }).to_string();
    Reply::Sse(vec![
        created(),
        event(
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
                "name": "exec_command", "arguments": arguments, "status": "completed"}}),
        ),
        completed(),
    ])
}

/// A stream cut after its first text delta, before `response.completed`.
pub fn broken() -> Reply {
    Reply::Broken(vec![
        created(),
        message_started(),
        event(
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": "half"}),
        ),
    ])
}

/// A response that starts and then never says another word.
pub fn stall() -> Reply {
    Reply::Stall(vec![created(), message_started()])
}

/// An HTTP 500 with an OpenAI-style error body.
pub fn server_error() -> Reply {
    Reply::Status(
        500,
        json!({"error": {"message": "mock overloaded", "type": "server_error"}}),
    )
}

/// Every text in a request's `input` (messages' texts, function call outputs), in order.
pub fn input_texts(body: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for item in body["input"].as_array().into_iter().flatten() {
        if let Some(output) = item["output"].as_str() {
            texts.push(output.to_string());
        }
        for part in item["content"].as_array().into_iter().flatten() {
            if let Some(text) = part["text"].as_str() {
                texts.push(text.to_string());
            }
        }
    }
    texts
}
