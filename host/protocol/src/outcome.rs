//! How turns and runs end, and what they emit: the host-side twin of the WIT `types` interface and
//! of the manager protocol's status taxonomy.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminalStatus {
    Completed,
    Failed,
    Blocked,
    Cancelled,
}

/// Why a turn or run did not complete. One taxonomy for plugins, host and manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    AgentError,
    ModelError,
    AuthError,
    TurnTimeout,
    BackendCrashed,
    BackendTimeout,
    ResourceExhausted,
    OomKilled,
    SandboxLost,
    ImageUnavailable,
    ResourceBundle,
    LeaseLost,
    SchemaInvalid,
    HostError,
    /// The backend's configuration (run or runtime profile) is wrong: the plugin refused it.
    ConfigInvalid,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::AgentError => "agent-error",
            FailureKind::ModelError => "model-error",
            FailureKind::AuthError => "auth-error",
            FailureKind::TurnTimeout => "turn-timeout",
            FailureKind::BackendCrashed => "backend-crashed",
            FailureKind::BackendTimeout => "backend-timeout",
            FailureKind::ResourceExhausted => "resource-exhausted",
            FailureKind::OomKilled => "oom-killed",
            FailureKind::SandboxLost => "sandbox-lost",
            FailureKind::ImageUnavailable => "image-unavailable",
            FailureKind::ResourceBundle => "resource-bundle",
            FailureKind::LeaseLost => "lease-lost",
            FailureKind::SchemaInvalid => "schema-invalid",
            FailureKind::HostError => "host-error",
            FailureKind::ConfigInvalid => "config-invalid",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TerminalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TerminalStatus::Completed => "completed",
            TerminalStatus::Failed => "failed",
            TerminalStatus::Blocked => "blocked",
            TerminalStatus::Cancelled => "cancelled",
        })
    }
}

/// The end of one turn, as reported to the manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnOutcome {
    pub status: TerminalStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
}

impl TurnOutcome {
    pub fn completed() -> Self {
        Self {
            status: TerminalStatus::Completed,
            failure_kind: None,
            message: None,
            thread_id: None,
            turn_id: None,
        }
    }

    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            status: TerminalStatus::Failed,
            failure_kind: Some(kind),
            message: Some(message.into()),
            ..Self::completed()
        }
    }

    pub fn blocked(message: impl Into<String>) -> Self {
        Self {
            status: TerminalStatus::Blocked,
            message: Some(message.into()),
            ..Self::completed()
        }
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self {
            status: TerminalStatus::Cancelled,
            message: Some(message.into()),
            ..Self::completed()
        }
    }
}

/// A run's status from its commands' outcomes, in order (docs/protocol.md, "Run status"): the
/// first command that failed makes the run `failed` with its kind; else the first `blocked` one
/// makes it `blocked`; else it is `completed` — unless every command was cancelled, then
/// `cancelled`. `None` when no command ran.
pub fn run_outcome(commands: &[(String, TurnOutcome)]) -> Option<TurnOutcome> {
    let named = |(id, outcome): &(String, TurnOutcome)| TurnOutcome {
        message: Some(match &outcome.message {
            Some(message) => format!("command {id}: {message}"),
            None => format!("command {id} ended {}", outcome.status),
        }),
        thread_id: None,
        turn_id: None,
        ..outcome.clone()
    };
    let first = |status| commands.iter().find(|(_, o)| o.status == status);
    if commands.is_empty() {
        return None;
    }
    if let Some(failed) = first(TerminalStatus::Failed) {
        return Some(named(failed));
    }
    if let Some(blocked) = first(TerminalStatus::Blocked) {
        return Some(named(blocked));
    }
    if commands
        .iter()
        .all(|(_, o)| o.status == TerminalStatus::Cancelled)
    {
        return commands.last().map(named);
    }
    let completed = commands
        .iter()
        .rev()
        .find(|(_, o)| o.status == TerminalStatus::Completed)?;
    Some(TurnOutcome {
        thread_id: None,
        turn_id: None,
        ..completed.1.clone()
    })
}

/// One event of a turn, numbered in the order the plugin emitted it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnEvent {
    /// Per-run sequence number, starting at 1.
    pub seq: u64,
    pub command_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// The attempt that emitted it; the manager stamps it on append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
    /// When the runner's host received it from the plugin (unix ms, the runner's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_at_ms: Option<u64>,
    /// When the manager stored it (unix ms, the manager's clock); the manager stamps it on
    /// append, whatever the runner sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_ms: Option<u64>,
}
