//! How a process ended, as plain data, and what that means for the turn. Pure (no host calls), so
//! a backend's own decisions on top of it are unit-tested natively.

use crate::process::{ExitStatus, KillReason};
use crate::{FailureKind, TurnResult};

/// How a process in the sandbox ended: [`ExitStatus`] without the WIT, comparable in tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, when the process exited by itself.
    pub code: Option<i32>,
    /// True when the host killed it (timeout, idle timeout, cancellation, `kill`).
    pub killed: bool,
    /// Why the host killed it, when it did.
    pub kill_reason: Option<KillReason>,
    /// True when the kernel's OOM killer ended it.
    pub oom_killed: bool,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        Self {
            code: status.code,
            killed: status.killed,
            kill_reason: status.kill_reason,
            oom_killed: status.oom_killed,
        }
    }
}

impl Exit {
    /// True when the process exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.killed && !self.oom_killed
    }

    /// True when the host killed it because the turn was cancelled.
    pub fn cancelled(&self) -> bool {
        self.kill_reason == Some(KillReason::Cancelled)
    }

    /// The standard reading of an exit, in this order: out of memory (`oom-killed`), cancelled,
    /// killed by the host (`turn-timeout`, naming the reason), then the exit code (0 completes the
    /// turn, anything else is an `agent-error`). `what` names the process in messages, e.g.
    /// `"the script"`.
    pub fn outcome(&self, what: &str) -> Outcome {
        if self.oom_killed {
            Outcome::Failed(
                FailureKind::OomKilled,
                format!("{what} was killed for running out of memory"),
            )
        } else if self.cancelled() {
            Outcome::Cancelled(format!("{what} was cancelled"))
        } else if self.killed {
            let reason = self.kill_reason.map_or("killed", KillReason::as_str);
            Outcome::Failed(
                FailureKind::TurnTimeout,
                format!("{what} was killed: {reason}"),
            )
        } else {
            match self.code {
                Some(0) => Outcome::Completed,
                Some(code) => Outcome::Failed(
                    FailureKind::AgentError,
                    format!("{what} exited with code {code}"),
                ),
                None => Outcome::Failed(
                    FailureKind::AgentError,
                    format!("{what} ended without an exit code"),
                ),
            }
        }
    }
}

/// How a turn ended, as plain data a backend decides and tests compare; it becomes the
/// [`TurnResult`] the host records (`.into()`), to which ids are then added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed(FailureKind, String),
    Cancelled(String),
    Blocked(String),
}

impl From<Outcome> for TurnResult {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Completed => TurnResult::completed(),
            Outcome::Failed(kind, message) => TurnResult::failed(kind, message),
            Outcome::Cancelled(message) => TurnResult::cancelled(message),
            Outcome::Blocked(message) => TurnResult::blocked(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, reason: Option<&str>, oom: bool) -> Exit {
        Exit {
            code,
            killed: reason.is_some(),
            kill_reason: reason.map(|r| KillReason::parse(r).expect("a kill reason")),
            oom_killed: oom,
        }
    }

    #[test]
    fn the_standard_precedence() {
        let what = "the script";
        // OOM wins over a cancellation that raced it.
        assert!(matches!(
            exit(None, Some("cancelled"), true).outcome(what),
            Outcome::Failed(FailureKind::OomKilled, _)
        ));
        assert_eq!(
            exit(None, Some("cancelled"), false).outcome(what),
            Outcome::Cancelled("the script was cancelled".into())
        );
        assert_eq!(
            exit(Some(137), Some("idle-timeout"), false).outcome(what),
            Outcome::Failed(
                FailureKind::TurnTimeout,
                "the script was killed: idle-timeout".into()
            )
        );
        assert_eq!(exit(Some(0), None, false).outcome(what), Outcome::Completed);
        assert_eq!(
            exit(Some(3), None, false).outcome(what),
            Outcome::Failed(
                FailureKind::AgentError,
                "the script exited with code 3".into()
            )
        );
        assert!(matches!(
            exit(None, None, false).outcome(what),
            Outcome::Failed(FailureKind::AgentError, m) if m.contains("without an exit code")
        ));
    }
}
