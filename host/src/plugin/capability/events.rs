//! `aac:plugin/events`: the plugin's events, numbered per run and handed to the host's event sink.

use tokio::sync::mpsc;

use crate::outcome::TurnEvent;
use crate::plugin::bindings::backend::aac::plugin::events::Host;
use crate::plugin::bindings::backend::aac::plugin::types::Event;
use crate::plugin::state::SessionState;
use crate::redact::Redactor;

/// Where a session's events go. Sequence numbers are per run and never reused.
pub struct EventsCapability {
    sink: mpsc::UnboundedSender<TurnEvent>,
    redactor: Redactor,
    next_seq: u64,
    pub(crate) command_id: String,
}

impl EventsCapability {
    pub fn new(sink: mpsc::UnboundedSender<TurnEvent>, redactor: Redactor) -> Self {
        Self {
            sink,
            redactor,
            next_seq: 1,
            command_id: String::new(),
        }
    }

    /// Numbers the next event `after + 1`: a run taken over from another runner goes on after the
    /// events the manager already has.
    pub fn continue_after(&mut self, after: u64) {
        self.next_seq = self.next_seq.max(after + 1);
    }

    /// Emits an event on the host's own behalf (e.g. the plugin crashed).
    pub fn push(&mut self, kind: &str, mut payload: serde_json::Value) {
        self.redactor.redact_json(&mut payload);
        let event = TurnEvent {
            seq: self.next_seq,
            command_id: self.command_id.clone(),
            kind: self.redactor.redact_str(kind).into_owned(),
            payload,
        };
        self.next_seq += 1;
        // A closed sink means nobody listens any more; the turn goes on regardless.
        let _ = self.sink.send(event);
    }
}

impl Host for SessionState {
    async fn emit(&mut self, event: Event) -> wasmtime::Result<()> {
        let payload = serde_json::from_str(&event.payload_json).unwrap_or_else(|err| {
            serde_json::json!({
                "invalid_json": event.payload_json,
                "error": err.to_string(),
            })
        });
        self.events.push(&event.kind, payload);
        Ok(())
    }
}
