//! `aac:plugin/events`: the plugin's events, numbered per run and handed to the host's event sink.
//!
//! Limits: one event's size, a sustained rate (token bucket with a burst of one second's worth) and
//! the bytes one turn may emit. An event over the size limit is cut with a marker
//! ([`aac_event_bounds`]). Output (`output.*`) and the plugin's other events have budgets of their
//! own, so a flood of output never starves the events that say what the turn did. Output past its
//! rate or bytes is dropped and counted: one [`DROPPED_KIND`] event says how many and where, and the
//! turn goes on. Any other kind past those limits ends the session with `resource-exhausted`,
//! naming the kind. A kind outside the registry's grammar ([`check_kind`]) is kept as
//! [`INVALID_KIND`]; a plugin's `host.*` or `network.*` kind (the host's own) is passed on as `plugin.host.*` / `plugin.network.*`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::bindings::backend::aac::plugin::events::Host;
use crate::bindings::backend::aac::plugin::types::Event;
use crate::limits::PluginLimits;
use crate::redact::Redactor;
use crate::state::{BackendWorld, SessionState};
use aac_protocol::outcome::TurnEvent;

/// The host's marker for output events it dropped: `{"dropped": N, "reason": …}`, placed where
/// they were dropped. The runner adds `N` to the run's `dropped_events`.
pub const DROPPED_KIND: &str = "host.events_dropped";
/// Kinds starting with this are the host's; a plugin's such kind is passed on as `plugin.<kind>`.
const HOST_KIND_PREFIX: &str = "host.";
/// The egress proxy's kinds: the host's too, so a plugin cannot forge a network verdict.
const NETWORK_KIND_PREFIX: &str = "network.";

/// Where a session's events go. Sequence numbers are per run and never reused.
pub struct EventsCapability {
    sink: mpsc::UnboundedSender<TurnEvent>,
    redactor: Redactor,
    /// Shared with [`HostEvents`]: events the host adds from outside the Store (the egress proxy's)
    /// take their numbers from the same sequence.
    numbering: Arc<Mutex<Numbering>>,
    limits: EventLimits,
    /// What output events (`output.*`) have used of the limits, and what the other kinds have.
    output: Budget,
    other: Budget,
    /// Why the session was ended by an event limit, once it was.
    pub(crate) exceeded: Option<String>,
    /// Output events dropped since the last marker, and the limit that dropped them.
    dropped: u64,
    dropped_reason: String,
    /// Well-known events whose payload broke the registry's schema (checked in debug builds only).
    pub(crate) schema_violations: u64,
    /// When the last drop marker was emitted: markers between output events come at most once per
    /// [`MARKER_INTERVAL`], so a flood that reopens for single events does not double its events.
    last_marker: Instant,
}

/// Least time between two drop markers placed among output events (a marker before any other
/// event and at the end of a turn is placed at once).
const MARKER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

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

/// One class of events' share of the limits: a token bucket for the rate and the turn's bytes.
struct Budget {
    tokens: f64,
    refilled: Instant,
    turn_bytes: u64,
}

impl Budget {
    fn full(limits: &EventLimits) -> Self {
        Self {
            tokens: f64::from(limits.per_second),
            refilled: Instant::now(),
            turn_bytes: 0,
        }
    }

    /// Takes one event of `size` bytes when the limits allow it; `Err` names the limit it broke.
    fn admit(&mut self, limits: &EventLimits, size: usize) -> Result<(), String> {
        self.room(limits, size)?;
        self.tokens -= 1.0;
        self.turn_bytes += size as u64;
        Ok(())
    }

    /// Whether one event of `size` bytes would be taken now, without taking it.
    fn room(&mut self, limits: &EventLimits, size: usize) -> Result<(), String> {
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
        Ok(())
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
            numbering: Arc::new(Mutex::new(Numbering {
                next_seq: 1,
                command_id: String::new(),
            })),
            output: Budget::full(&limits),
            other: Budget::full(&limits),
            limits,
            exceeded: None,
            dropped: 0,
            dropped_reason: String::new(),
            schema_violations: 0,
            last_marker: Instant::now(),
        }
    }

    /// Numbers the next event `after + 1`: a run taken over from another runner goes on after the
    /// events the manager already has.
    pub fn continue_after(&mut self, after: u64) {
        let mut numbering = self.numbering.lock().unwrap_or_else(|e| e.into_inner());
        numbering.next_seq = numbering.next_seq.max(after + 1);
    }

    /// Events from now on belong to `command_id`.
    pub fn set_command(&mut self, command_id: &str) {
        let mut numbering = self.numbering.lock().unwrap_or_else(|e| e.into_inner());
        command_id.clone_into(&mut numbering.command_id);
    }

    /// A handle that adds the host's own events to this session's sequence from anywhere.
    pub fn host_events(&self) -> HostEvents {
        HostEvents {
            sink: self.sink.clone(),
            redactor: self.redactor.clone(),
            numbering: self.numbering.clone(),
        }
    }

    /// A turn starts: its byte budgets are full again.
    pub fn start_turn(&mut self) {
        self.output.turn_bytes = 0;
        self.other.turn_bytes = 0;
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
            self.last_marker = Instant::now();
            self.push(DROPPED_KIND, payload);
        }
    }

    /// Emits an event on the host's own behalf (e.g. the plugin crashed).
    pub fn push(&mut self, kind: &str, payload: serde_json::Value) {
        push(&self.sink, &self.redactor, &self.numbering, kind, payload);
    }
}

/// The next sequence number of a session's events, and the command they belong to.
struct Numbering {
    next_seq: u64,
    command_id: String,
}

/// Numbers and sends one event. The lock is held while sending, so the sink sees events in the
/// order of their numbers whoever sends them.
fn push(
    sink: &mpsc::UnboundedSender<TurnEvent>,
    redactor: &Redactor,
    numbering: &Mutex<Numbering>,
    kind: &str,
    mut payload: serde_json::Value,
) {
    redactor.redact_json(&mut payload);
    let kind = redactor.redact_str(kind).into_owned();
    let mut numbering = numbering.lock().unwrap_or_else(|e| e.into_inner());
    let event = TurnEvent {
        seq: numbering.next_seq,
        command_id: numbering.command_id.clone(),
        kind,
        payload,
        attempt_id: None,
        emitted_at_ms: Some(unix_ms()),
        received_at_ms: None,
    };
    numbering.next_seq += 1;
    // A closed sink means nobody listens any more; the turn goes on regardless.
    let _ = sink.send(event);
}

/// Adds the host's own events (kinds it reserves, e.g. `network.denied`) to a session's events,
/// numbered in the same sequence as the plugin's, from outside the session's Store.
#[derive(Clone)]
pub struct HostEvents {
    sink: mpsc::UnboundedSender<TurnEvent>,
    redactor: Redactor,
    numbering: Arc<Mutex<Numbering>>,
}

impl HostEvents {
    pub fn push(&self, kind: &str, payload: serde_json::Value) {
        push(&self.sink, &self.redactor, &self.numbering, kind, payload);
    }
}

/// Now on the system clock, in ms since the Unix epoch (0 before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Host for SessionState<BackendWorld> {
    async fn emit(&mut self, event: Event) -> wasmtime::Result<()> {
        // Host time, not the plugin's CPU (the Store's call hook pauses the budget): a flood is
        // stopped by the event limits, whatever the speed of this machine, not by the CPU budget.
        self.emit_event(event)
    }

    async fn output_open(&mut self) -> wasmtime::Result<bool> {
        let events = &mut self.world.events;
        // The smallest output event: its kind and `{"text":""}`.
        let smallest = "output.stdout".len() + r#"{"text":""}"#.len();
        match events.output.room(&events.limits, smallest) {
            Ok(()) => Ok(true),
            Err(reason) => {
                events.dropped_reason = reason;
                Ok(false)
            }
        }
    }

    async fn skipped_output(&mut self, skipped: u64) -> wasmtime::Result<()> {
        let events = &mut self.world.events;
        if skipped > 0 {
            events.dropped = events.dropped.saturating_add(skipped);
            if events.dropped_reason.is_empty() {
                "the plugin skipped output while the host was dropping it"
                    .clone_into(&mut events.dropped_reason);
            }
        }
        Ok(())
    }
}

impl SessionState<BackendWorld> {
    fn emit_event(&mut self, event: Event) -> wasmtime::Result<()> {
        let Event {
            kind: claimed,
            payload_json,
        } = event;
        // A kind outside the grammar is kept under a kind of the host's, so nothing is lost and
        // nothing odd is shown; its payload is wrapped below.
        let invalid = check_kind(&claimed).err();
        let kind = match &invalid {
            Some(_) => INVALID_KIND.to_owned(),
            None if claimed.starts_with(HOST_KIND_PREFIX)
                || claimed.starts_with(NETWORK_KIND_PREFIX) =>
            {
                format!("plugin.{claimed}")
            }
            None => claimed.clone(),
        };
        let room = self
            .world
            .events
            .limits
            .event_bytes
            .saturating_sub(kind.len());
        let payload_json =
            aac_event_bounds::bound_payload(&payload_json, room).unwrap_or(payload_json);
        let is_output = kind.starts_with("output.");
        let events = &mut self.world.events;
        let budget = if is_output {
            &mut events.output
        } else {
            &mut events.other
        };
        if let Err(reason) = budget.admit(&events.limits, kind.len() + payload_json.len()) {
            if is_output {
                events.dropped += 1;
                events.dropped_reason = reason;
                return Ok(());
            }
            // Trapping ends the session; `failure::classify` reports it as resource-exhausted.
            let reason = format!("{reason} (events of kind `{kind}`)");
            events.exceeded = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        if !is_output || events.last_marker.elapsed() >= MARKER_INTERVAL {
            events.mark_drops();
        }
        let payload = serde_json::from_str(&payload_json).unwrap_or_else(|err| {
            serde_json::json!({
                "invalid_json": payload_json,
                "error": err.to_string(),
            })
        });
        // Debug and test builds hold plugins to the registry; release builds trust them.
        #[cfg(debug_assertions)]
        if invalid.is_none()
            && let Err(problem) = super::event_schema::check(&kind, &payload)
        {
            events.schema_violations += 1;
            tracing::warn!(
                target: "plugin",
                plugin = %self.identity,
                kind = %kind,
                problem = %problem,
                "event payload breaks its kind's schema in the registry (wit/events.schema.json)"
            );
        }
        let payload = match invalid {
            Some(error) => serde_json::json!({
                "kind": crate::text::cut(&claimed, MAX_KIND_BYTES),
                "error": error,
                "payload": payload,
            }),
            None => payload,
        };
        events.push(&kind, payload);
        Ok(())
    }
}

/// Longest event kind.
pub const MAX_KIND_BYTES: usize = 128;
/// The kind an event with an invalid kind is recorded under.
pub const INVALID_KIND: &str = "plugin.invalid_event";

/// An event kind is a short dotted name (`output.stdout`, `agent.message`): segments of lowercase
/// ASCII letters, digits, `_` and `-`, the first starting with a letter, at most
/// [`MAX_KIND_BYTES`] in all. `Err` says what is wrong.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if kind.is_empty() {
        return Err("the event kind is empty".into());
    }
    if kind.len() > MAX_KIND_BYTES {
        return Err(format!(
            "the event kind is {} bytes, over the limit of {MAX_KIND_BYTES}",
            kind.len()
        ));
    }
    let segment_ok = |segment: &str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if !kind.starts_with(|c: char| c.is_ascii_lowercase()) || !kind.split('.').all(segment_ok) {
        return Err(
            "the event kind is not a dotted name of lowercase letters, digits, `_` and `-` \
             starting with a letter"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod kind_tests {
    use super::check_kind;

    #[test]
    fn kinds_are_short_dotted_lowercase_names() {
        for ok in [
            "tick",
            "output.stdout",
            "agent.item.completed",
            "features.unbounded_x",
            "a-b.c2",
        ] {
            assert_eq!(check_kind(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "\u{1b}[2J",
            "Output",
            ".x",
            "x.",
            "a..b",
            "2x",
            "a b",
            &"k".repeat(129),
        ] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
    }
}
