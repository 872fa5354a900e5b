//! `aac:plugin/log`: plugin log lines into the host's tracing, tagged with plugin and run.

use crate::plugin::bindings::backend::aac::plugin::log::{Host, Level};
use crate::plugin::state::SessionState;

pub struct LogCapability {
    pub run_id: String,
    /// Longest message kept; the rest is cut with a marker.
    pub max_message_bytes: usize,
    pub redactor: crate::redact::Redactor,
}

impl Host for SessionState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = self.log.redactor.redact_str(&message).into_owned();
        if message.len() > self.log.max_message_bytes {
            let mut cut = self.log.max_message_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …[truncated]");
        }
        let plugin = self.identity.name.as_str();
        let run = self.log.run_id.as_str();
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
