//! `aac:plugin/log`: plugin log lines into the host's tracing, tagged with plugin and run.
//!
//! Bounded per session: each line is cut to `max_message_bytes`, lines come at a sustained rate
//! (a token bucket) and a session writes at most `session_bytes` in all. What is dropped is counted
//! and the count is logged with the next line that passes (and when the session ends).

use std::time::Instant;

use crate::bindings::backend::aac::plugin::log::{Host, Level};
use crate::state::{SessionState, WorldState};
use crate::text::{cut, terminal_safe};

/// Sustained plugin log lines per second, per session; a burst of [`BURST_LINES`] is allowed.
const LINES_PER_SECOND: f64 = 100.0;
const BURST_LINES: f64 = 1000.0;
/// Bytes of log lines one session may write in all.
const SESSION_BYTES: u64 = 16 << 20;

pub struct LogCapability {
    pub run_id: String,
    /// Longest message kept; the rest is cut with a marker.
    pub max_message_bytes: usize,
    pub redactor: crate::redact::Redactor,
    budget: LogBudget,
}

/// The rate and volume bounds of one session's log.
struct LogBudget {
    tokens: f64,
    refilled: Instant,
    bytes: u64,
    dropped: u64,
}

impl LogCapability {
    pub fn new(
        run_id: String,
        max_message_bytes: usize,
        redactor: crate::redact::Redactor,
    ) -> Self {
        Self {
            run_id,
            max_message_bytes,
            redactor,
            budget: LogBudget {
                tokens: BURST_LINES,
                refilled: Instant::now(),
                bytes: 0,
                dropped: 0,
            },
        }
    }

    /// Whether a line of `len` bytes may be written now; a refused one is counted.
    fn admit(&mut self, len: usize) -> bool {
        let budget = &mut self.budget;
        let now = Instant::now();
        let refill = now.duration_since(budget.refilled).as_secs_f64() * LINES_PER_SECOND;
        budget.tokens = (budget.tokens + refill).min(BURST_LINES);
        budget.refilled = now;
        if budget.tokens < 1.0 || budget.bytes + len as u64 > SESSION_BYTES {
            budget.dropped += 1;
            return false;
        }
        budget.tokens -= 1.0;
        budget.bytes += len as u64;
        true
    }

    /// Lines dropped since the last report, now reported.
    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.budget.dropped)
    }
}

impl Drop for LogCapability {
    fn drop(&mut self) {
        let dropped = self.take_dropped();
        if dropped > 0 {
            tracing::warn!(target: "plugin", run = %self.run_id, dropped, "plugin log lines dropped (rate or volume limit)");
        }
    }
}

impl<W: WorldState> Host for SessionState<W> {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let max = self.log.max_message_bytes;
        if !self.log.admit(message.len().min(max)) {
            return Ok(());
        }
        let message = self.log.redactor.redact_str(&message).into_owned();
        let message = terminal_safe(&cut(&message, max)).into_owned();
        let dropped = self.log.take_dropped();
        let plugin = self.identity.name.as_str();
        let run = self.log.run_id.as_str();
        if dropped > 0 {
            tracing::warn!(target: "plugin", plugin, run, dropped, "plugin log lines dropped (rate or volume limit)");
        }
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, run, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, run, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, run, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, run, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, run, "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_lines_is_cut_to_the_burst_and_the_rest_counted() {
        let mut log = LogCapability::new("run".into(), 1024, Default::default());
        let admitted = (0..10_000).filter(|_| log.admit(100)).count() as u64;
        assert!(
            (BURST_LINES as u64..BURST_LINES as u64 + 50).contains(&admitted),
            "{admitted}"
        );
        assert_eq!(log.take_dropped(), 10_000 - admitted);
        assert_eq!(log.take_dropped(), 0, "reported once");
    }

    #[test]
    fn a_session_writes_a_bounded_volume() {
        let mut log = LogCapability::new("run".into(), 1 << 20, Default::default());
        let big = 1 << 20;
        let admitted = (0..64).filter(|_| log.admit(big)).count() as u64;
        assert_eq!(admitted, SESSION_BYTES / big as u64);
    }
}
