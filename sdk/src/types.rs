//! Conveniences on the generated WIT types.

use crate::process::KillReason;
use crate::{FailureKind, StartError, StartFailure, TerminalStatus, TurnResult};

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

impl KillReason {
    /// The reason as the events spell it: `timeout`, `idle-timeout`, `cancelled`, `requested`.
    pub fn as_str(self) -> &'static str {
        match self {
            KillReason::Timeout => "timeout",
            KillReason::IdleTimeout => "idle-timeout",
            KillReason::Cancelled => "cancelled",
            KillReason::Requested => "requested",
        }
    }

    /// The reason [`Self::as_str`] spells `text`, e.g. from a recorded transcript.
    pub fn parse(text: &str) -> Option<Self> {
        [
            KillReason::Timeout,
            KillReason::IdleTimeout,
            KillReason::Cancelled,
            KillReason::Requested,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

impl StartError {
    /// The backend configuration is wrong; `message` names the setting. The run fails with
    /// `config-invalid`.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(StartFailure::ConfigInvalid, message)
    }

    /// The agent needs something it cannot get by itself; the run ends `blocked`.
    pub fn blocked(message: impl Into<String>) -> Self {
        Self::new(StartFailure::Blocked, message)
    }

    /// Missing or refused credentials; the run fails with `auth-error`.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(StartFailure::AuthError, message)
    }

    /// Any other reason the session cannot open; the run fails with `agent-error`.
    pub fn agent(message: impl Into<String>) -> Self {
        Self::new(StartFailure::AgentError, message)
    }

    fn new(kind: StartFailure, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
