//! Conveniences on the generated WIT types.

use crate::{FailureKind, TerminalStatus, TurnResult};

impl TurnResult {
    /// A turn that completed.
    pub fn completed() -> Self {
        Self::with_status(TerminalStatus::Completed)
    }

    /// A turn that failed for `kind`, with a message for the operator.
    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            failure_kind: Some(kind),
            message: Some(message.into()),
            ..Self::with_status(TerminalStatus::Failed)
        }
    }

    /// A turn that stopped because its processes were cancelled.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self {
            message: Some(message.into()),
            ..Self::with_status(TerminalStatus::Cancelled)
        }
    }

    /// A turn that needs input it cannot get by itself.
    pub fn blocked(message: impl Into<String>) -> Self {
        Self {
            message: Some(message.into()),
            ..Self::with_status(TerminalStatus::Blocked)
        }
    }

    /// Records the agent's conversation id so a later turn can resume it.
    pub fn with_thread_id(mut self, thread_id: impl Into<String>) -> Self {
        self.thread_id = Some(thread_id.into());
        self
    }

    /// Records the agent's id for this turn.
    pub fn with_turn_id(mut self, turn_id: impl Into<String>) -> Self {
        self.turn_id = Some(turn_id.into());
        self
    }

    /// Adds a message to any result.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    fn with_status(status: TerminalStatus) -> Self {
        Self {
            status,
            failure_kind: None,
            message: None,
            thread_id: None,
            turn_id: None,
        }
    }
}
