//! `aac:plugin/events`: the plugin's events, numbered per run and handed to the host's event sink.
//!
//! Limits: one event's size, a sustained rate (token bucket with a burst of one second's worth) and
//! the bytes one turn may emit. An event over the size limit is cut with a marker
//! ([`crate::truncate`]). Output (`output.*`) past the rate or the turn's bytes is dropped and
//! counted: one [`DROPPED_KIND`] event says how many and where, and the turn goes on. Any other kind
//! past those limits ends the session with `resource-exhausted`, naming the kind.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::outcome::TurnEvent;
use crate::plugin::bindings::backend::aac::plugin::events::Host;
use crate::plugin::bindings::backend::aac::plugin::types::Event;
use crate::plugin::limits::PluginLimits;
use crate::plugin::state::SessionState;
use crate::redact::Redactor;

/// The host's marker for output events it dropped: `{"dropped": N, "reason": …}`, placed where
/// they were dropped. The runner adds `N` to the run's `dropped_events`.
pub const DROPPED_KIND: &str = "host.events_dropped";
/// Kinds starting with this are the host's; a plugin's such kind is passed on as `plugin.<kind>`.
const HOST_KIND_PREFIX: &str = "host.";
/// Longest event kind kept; a longer one is cut.
const MAX_KIND_BYTES: usize = 256;

/// Where a session's events go. Sequence numbers are per run and never reused.
pub struct EventsCapability {
    sink: mpsc::UnboundedSender<TurnEvent>,
    redactor: Redactor,
    next_seq: u64,
    pub(crate) command_id: String,
    limits: EventLimits,
    turn_bytes: u64,
    tokens: f64,
    refilled: Instant,
    /// Why the session was ended by an event limit, once it was.
    pub(crate) exceeded: Option<String>,
    /// Output events dropped since the last marker, and the limit that dropped them.
    dropped: u64,
    dropped_reason: String,
}

#[derive(Clone, Copy, Debug)]
pub struct EventLimits {
    pub event_bytes: usize,
    pub per_second: u32,
    pub turn_bytes: u64,
}

impl From<&PluginLimits> for EventLimits {
    fn from(limits: &PluginLimits) -> Self {
        Self {
            event_bytes: limits.event_bytes,
            per_second: limits.events_per_second,
            turn_bytes: limits.turn_output_bytes,
        }
    }
}

impl EventsCapability {
    pub fn new(sink: mpsc::UnboundedSender<TurnEvent>, redactor: Redactor) -> Self {
        Self::with_limits(sink, redactor, (&PluginLimits::default()).into())
    }

    pub fn with_limits(
        sink: mpsc::UnboundedSender<TurnEvent>,
        redactor: Redactor,
        limits: EventLimits,
    ) -> Self {
        Self {
            sink,
            redactor,
            next_seq: 1,
            command_id: String::new(),
            limits,
            turn_bytes: 0,
            tokens: f64::from(limits.per_second),
            refilled: Instant::now(),
            exceeded: None,
            dropped: 0,
            dropped_reason: String::new(),
        }
    }

    /// Numbers the next event `after + 1`: a run taken over from another runner goes on after the
    /// events the manager already has.
    pub fn continue_after(&mut self, after: u64) {
        self.next_seq = self.next_seq.max(after + 1);
    }

    /// A turn starts: its output budget is full again.
    pub fn start_turn(&mut self) {
        self.turn_bytes = 0;
    }

    /// A turn ended: output dropped at its end gets its marker.
    pub fn end_turn(&mut self) {
        self.mark_drops();
    }

    /// Emits the marker for output dropped since the last one, if any.
    fn mark_drops(&mut self) {
        if self.dropped > 0 {
            let payload = serde_json::json!({
                "dropped": self.dropped,
                "reason": std::mem::take(&mut self.dropped_reason),
            });
            self.dropped = 0;
            self.push(DROPPED_KIND, payload);
        }
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

    /// Checks one event from the plugin against the rate and the turn's bytes, and takes its share
    /// only when it passes; `Err` names the limit it broke.
    fn admit(&mut self, size: usize) -> Result<(), String> {
        let limits = self.limits;
        if self.turn_bytes + size as u64 > limits.turn_bytes {
            return Err(format!(
                "the turn emitted more than its limit of {} bytes of events",
                limits.turn_bytes
            ));
        }
        let now = Instant::now();
        let rate = f64::from(limits.per_second);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens < 1.0 {
            return Err(format!(
                "events came faster than the limit of {} per second",
                limits.per_second
            ));
        }
        self.tokens -= 1.0;
        self.turn_bytes += size as u64;
        Ok(())
    }
}

impl Host for SessionState {
    async fn emit(&mut self, event: Event) -> wasmtime::Result<()> {
        // Host time, not the plugin's CPU: a flood is stopped by the event limits, whatever the
        // speed of this machine, not by the CPU budget.
        self.cpu.enter_host();
        let result = self.emit_event(event);
        self.cpu.leave_host();
        result
    }
}

impl SessionState {
    fn emit_event(&mut self, event: Event) -> wasmtime::Result<()> {
        let mut kind = event.kind;
        if kind.len() > MAX_KIND_BYTES {
            let mut cut = MAX_KIND_BYTES;
            while !kind.is_char_boundary(cut) {
                cut -= 1;
            }
            kind.truncate(cut);
        }
        if kind.starts_with(HOST_KIND_PREFIX) {
            kind = format!("plugin.{kind}");
        }
        let room = self.events.limits.event_bytes.saturating_sub(kind.len());
        let payload_json = match crate::truncate::bound_payload(&event.payload_json, room) {
            Some(bounded) => bounded,
            None => event.payload_json,
        };
        if let Err(reason) = self.events.admit(kind.len() + payload_json.len()) {
            if kind.starts_with("output.") {
                self.events.dropped += 1;
                self.events.dropped_reason = reason;
                return Ok(());
            }
            // Trapping ends the session; `failure::classify` reports it as resource-exhausted.
            let reason = format!("{reason} (events of kind `{kind}`)");
            self.events.exceeded = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        self.events.mark_drops();
        let payload = serde_json::from_str(&payload_json).unwrap_or_else(|err| {
            serde_json::json!({
                "invalid_json": payload_json,
                "error": err.to_string(),
            })
        });
        self.events.push(&kind, payload);
        Ok(())
    }
}
