//! How a Codex turn ended: the process's exit plus what its stream said → terminal status and
//! failure kind. Pure, so every row of the failure table in docs/plugins/codex.md is unit-tested.

pub use aac_sdk::{Exit, FailureKind, Outcome};

use crate::jsonl::StreamState;

/// Decides a turn's end. `stderr_tail` is the last stderr lines, quoted when nothing better explains
/// a crash; `idle_timeout_ms` names the watchdog's limit in its message.
pub fn decide(
    exit: &Exit,
    stream: &StreamState,
    stderr_tail: &str,
    idle_timeout_ms: u64,
) -> Outcome {
    if exit.oom_killed {
        return Outcome::Failed(
            FailureKind::OomKilled,
            "codex was killed for running out of memory".into(),
        );
    }
    match exit.kill_reason.map(aac_sdk::process::KillReason::as_str) {
        Some("cancelled") => return Outcome::Cancelled("the turn was cancelled".into()),
        Some("idle-timeout") => {
            return Outcome::Failed(
                FailureKind::TurnTimeout,
                format!("codex printed nothing for {idle_timeout_ms} ms (idle watchdog)"),
            );
        }
        Some(reason) if exit.killed => {
            return Outcome::Failed(
                FailureKind::TurnTimeout,
                format!("codex was killed: {reason}"),
            );
        }
        _ => {}
    }
    if stream.turn_completed && exit.code == Some(0) {
        return Outcome::Completed;
    }
    if let Some(message) = &stream.error {
        return Outcome::Failed(model_failure(message), message.clone());
    }
    let tail = if stderr_tail.is_empty() {
        String::new()
    } else {
        format!(": {stderr_tail}")
    };
    match exit.code {
        Some(code @ (126 | 127)) => Outcome::Failed(
            FailureKind::AgentError,
            format!("the codex CLI could not be started in the sandbox image (exit {code}){tail}"),
        ),
        Some(0) => Outcome::Failed(
            FailureKind::AgentError,
            format!("codex exited without reporting turn.completed{tail}"),
        ),
        Some(code) => Outcome::Failed(
            FailureKind::AgentError,
            format!("codex exited with code {code}{tail}"),
        ),
        None => Outcome::Failed(
            FailureKind::AgentError,
            format!("codex ended without an exit code (crashed){tail}"),
        ),
    }
}

/// A provider error refusing credentials is `auth-error`; any other is `model-error`.
pub fn model_failure(message: &str) -> FailureKind {
    let lower = message.to_ascii_lowercase();
    let auth = [
        "401",
        "403",
        "unauthorized",
        "forbidden",
        "authenticat",
        "api key",
        "api_key",
    ];
    if auth.iter().any(|needle| lower.contains(needle)) {
        FailureKind::AuthError
    } else {
        FailureKind::ModelError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> Exit {
        Exit {
            code: Some(code),
            ..Exit::default()
        }
    }

    fn killed(reason: &str) -> Exit {
        Exit {
            killed: true,
            kill_reason: aac_sdk::process::KillReason::parse(reason),
            ..Exit::default()
        }
    }

    fn completed() -> StreamState {
        StreamState {
            turn_completed: true,
            ..StreamState::default()
        }
    }

    fn failed(message: &str) -> StreamState {
        StreamState {
            error: Some(message.into()),
            ..StreamState::default()
        }
    }

    #[test]
    fn the_failure_table() {
        let none = StreamState::default();
        let cases: Vec<(Exit, StreamState, Outcome)> = vec![
            (exited(0), completed(), Outcome::Completed),
            (
                exited(1),
                failed("stream disconnected before completion"),
                Outcome::Failed(
                    FailureKind::ModelError,
                    "stream disconnected before completion".into(),
                ),
            ),
            (
                exited(1),
                failed("unexpected status 401 Unauthorized: bad key"),
                Outcome::Failed(
                    FailureKind::AuthError,
                    "unexpected status 401 Unauthorized: bad key".into(),
                ),
            ),
            (
                killed("cancelled"),
                none.clone(),
                Outcome::Cancelled("the turn was cancelled".into()),
            ),
            (
                killed("idle-timeout"),
                none.clone(),
                Outcome::Failed(
                    FailureKind::TurnTimeout,
                    "codex printed nothing for 500 ms (idle watchdog)".into(),
                ),
            ),
            (
                killed("timeout"),
                none.clone(),
                Outcome::Failed(FailureKind::TurnTimeout, "codex was killed: timeout".into()),
            ),
            (
                Exit {
                    oom_killed: true,
                    ..exited(137)
                },
                none.clone(),
                Outcome::Failed(
                    FailureKind::OomKilled,
                    "codex was killed for running out of memory".into(),
                ),
            ),
            (
                exited(2),
                none.clone(),
                Outcome::Failed(
                    FailureKind::AgentError,
                    "codex exited with code 2: boom".into(),
                ),
            ),
            (
                exited(0),
                none.clone(),
                Outcome::Failed(
                    FailureKind::AgentError,
                    "codex exited without reporting turn.completed: boom".into(),
                ),
            ),
        ];
        for (exit, stream, expected) in cases {
            assert_eq!(
                decide(&exit, &stream, "boom", 500),
                expected,
                "{exit:?} {stream:?}"
            );
        }
    }

    #[test]
    fn a_missing_cli_is_named() {
        let verdict = decide(&exited(127), &StreamState::default(), "", 500);
        let Outcome::Failed(FailureKind::AgentError, message) = verdict else {
            panic!("{verdict:?}")
        };
        assert!(message.contains("could not be started"), "{message}");
    }

    #[test]
    fn a_completed_turn_wins_over_a_retried_error() {
        let stream = StreamState {
            turn_completed: true,
            error: Some("Reconnecting... 1/5".into()),
            ..StreamState::default()
        };
        assert_eq!(decide(&exited(0), &stream, "", 1), Outcome::Completed);
    }
}
