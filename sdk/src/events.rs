//! Typed event emission. Every function returns at once: the host buffers and ships the events.

use serde::Serialize;

use crate::Event;
use crate::bindings::backend::aac::plugin::events as host;

/// Emits an event whose payload is any serializable value.
///
/// A payload that fails to serialize is replaced by `{"error": "..."}` rather than lost silently.
pub fn emit<T: Serialize + ?Sized>(kind: &str, payload: &T) {
    let payload_json = serde_json::to_string(payload).unwrap_or_else(|err| {
        serde_json::json!({ "error": format!("payload did not serialize: {err}") }).to_string()
    });
    emit_raw(kind, payload_json);
}

/// Emits an event whose payload is already JSON text.
pub fn emit_raw(kind: &str, payload_json: String) {
    host::emit(&Event {
        kind: kind.to_string(),
        payload_json,
    });
}

/// `output.stdout` / `output.stderr`: a line of a process's output.
pub fn emit_output(stream: crate::process::Stream, line: &str) {
    emit(stream.event_kind(), &serde_json::json!({ "text": line }));
}

/// `agent.message`: text the agent says to the user.
pub fn emit_message(text: &str) {
    emit("agent.message", &serde_json::json!({ "text": text }));
}
