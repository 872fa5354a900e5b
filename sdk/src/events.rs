//! Typed event emission. Every function returns at once: the host buffers and ships the events.
//!
//! Every event is bounded: a payload over [`MAX_EVENT_BYTES`] is cut (its longest strings first)
//! and carries `"truncated": true` and `"original_bytes": N` ([`aac_event_bounds`]), so an agent
//! printing a lot never costs its turn.

use serde::Serialize;

pub mod kinds;

pub use aac_event_bounds::cut_text;

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

/// Largest event payload the SDK passes to the host, in bytes of JSON: under the host's default
/// limit per event (256 KiB), with room for the kind; a host with a lower limit cuts further.
pub const MAX_EVENT_BYTES: usize = 255 << 10;

/// Emits an event whose payload is already JSON text, cut to [`MAX_EVENT_BYTES`] if needed.
pub fn emit_raw(kind: &str, payload_json: String) {
    crate::output_gate::report_skipped();
    let payload_json =
        aac_event_bounds::bound_payload(&payload_json, MAX_EVENT_BYTES).unwrap_or(payload_json);
    host::emit(&Event {
        kind: kind.to_string(),
        payload_json,
    });
}

/// `output.stdout` / `output.stderr`: a line of a process's output, `{"text": …}`. A line that
/// was not valid UTF-8 also says how many of its bytes were (`invalid_utf8_bytes`, each replaced
/// by U+FFFD) and its size (`bytes`); a line too long for one event is cut and says so
/// (`truncated`, `original_bytes`: its size as printed).
///
/// While the host drops output (past its rate or the turn's bytes) the event is not built; it is
/// counted and reported as skipped, so it stays counted as dropped.
pub fn emit_output(stream: crate::process::Stream, line: &crate::process::Line) {
    if !crate::output_gate::admit() {
        return;
    }
    // Room for the kind, the keys and the counts.
    let room = MAX_EVENT_BYTES - 1024;
    let mut cut = line.text.len().min(room);
    while !line.text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = serde_json::json!({ "text": &line.text[..cut] });
    if line.invalid_utf8_bytes > 0 {
        payload["invalid_utf8_bytes"] = line.invalid_utf8_bytes.into();
        payload["bytes"] = line.bytes.into();
    }
    if line.bytes > line.kept_bytes || cut < line.text.len() {
        payload["truncated"] = true.into();
        payload["original_bytes"] = line.bytes.into();
    }
    emit(stream.event_kind(), &payload);
}

/// [`emit_output`] for a text that did not come from a process.
pub fn emit_output_text(stream: crate::process::Stream, text: &str) {
    if !crate::output_gate::admit() {
        return;
    }
    emit(stream.event_kind(), &serde_json::json!({ "text": text }));
}

/// `agent.message`: text the agent says to the user.
pub fn emit_message(text: &str) {
    emit("agent.message", &serde_json::json!({ "text": text }));
}
