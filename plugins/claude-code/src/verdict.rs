//! How a Claude Code turn ended: the process's exit plus its `result` line (if any) → terminal
//! status and failure kind. Pure; each row of docs/plugins/claude-code.md's failure table is tested.

pub use aac_sdk::{Exit, FailureKind, Outcome};

use crate::stream::{ResultLine, StreamState};

/// Decides a turn's end; `stderr_tail` explains a crash, `idle_timeout_ms` names the watchdog.
pub fn decide(
    exit: &Exit,
    stream: &StreamState,
    stderr_tail: &str,
    idle_timeout_ms: u64,
) -> Outcome {
    if exit.oom_killed {
        return Outcome::Failed(
            FailureKind::OomKilled,
            "claude was killed for running out of memory".into(),
        );
    }
    match (
        exit.kill_reason.map(aac_sdk::process::KillReason::as_str),
        &stream.result,
    ) {
        (Some("cancelled"), _) => return Outcome::Cancelled("the turn was cancelled".into()),
        // A CLI that printed its result and then hung has finished the turn: the result decides.
        (Some("idle-timeout"), Some(result)) => return from_result(result),
        // The CLI can hang without ever printing its result line: the watchdog ends the turn.
        (Some("idle-timeout"), None) => {
            return Outcome::Failed(
                FailureKind::TurnTimeout,
                format!(
                    "claude printed nothing for {idle_timeout_ms} ms (idle watchdog); no result line"
                ),
            );
        }
        (Some(reason), _) if exit.killed => {
            return Outcome::Failed(
                FailureKind::TurnTimeout,
                format!("claude was killed: {reason}"),
            );
        }
        _ => {}
    }
    if let Some(result) = &stream.result {
        return from_result(result);
    }
    let tail = if stderr_tail.is_empty() {
        String::new()
    } else {
        format!(": {stderr_tail}")
    };
    let message = match exit.code {
        Some(code @ (126 | 127)) => {
            format!("the claude CLI could not be started in the sandbox image (exit {code}){tail}")
        }
        Some(0) => format!("claude exited without a result line{tail}"),
        Some(code) => format!("claude exited with code {code} without a result line{tail}"),
        None => format!("claude ended without an exit code (crashed){tail}"),
    };
    Outcome::Failed(FailureKind::AgentError, message)
}

fn from_result(result: &ResultLine) -> Outcome {
    if !result.is_error && result.subtype == "success" {
        return Outcome::Completed;
    }
    let message = if result.text.is_empty() {
        format!("claude ended with {}", result.subtype)
    } else {
        result.text.clone()
    };
    let api_error = result.api_error_status.is_some()
        || result.terminal_reason.as_deref() == Some("api_error")
        || result.text.starts_with("API Error");
    if api_error {
        let auth = matches!(result.api_error_status, Some(401 | 403))
            || message.to_ascii_lowercase().contains("authenticat");
        let failure = if auth {
            FailureKind::AuthError
        } else {
            FailureKind::ModelError
        };
        Outcome::Failed(failure, message)
    } else {
        Outcome::Failed(FailureKind::AgentError, message)
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

    fn with_result(result: ResultLine) -> StreamState {
        StreamState {
            session_id: Some("s".into()),
            result: Some(result),
        }
    }

    fn api_error(status: Option<u64>, text: &str) -> StreamState {
        with_result(ResultLine {
            subtype: "success".into(),
            is_error: true,
            text: text.into(),
            terminal_reason: Some("api_error".into()),
            api_error_status: status,
            uuid: None,
        })
    }

    #[test]
    fn the_failure_table() {
        let none = StreamState::default();
        let success = with_result(ResultLine {
            subtype: "success".into(),
            text: "hi".into(),
            ..ResultLine::default()
        });
        let max_turns = with_result(ResultLine {
            subtype: "error_max_turns".into(),
            is_error: true,
            ..ResultLine::default()
        });
        let cases: Vec<(Exit, StreamState, Outcome)> = vec![
            (exited(0), success.clone(), Outcome::Completed),
            (killed("idle-timeout"), success, Outcome::Completed),
            (
                exited(1),
                api_error(Some(500), "API Error: 500 boom"),
                Outcome::Failed(FailureKind::ModelError, "API Error: 500 boom".into()),
            ),
            (
                exited(1),
                api_error(
                    None,
                    "API Error: API returned an empty or malformed response",
                ),
                Outcome::Failed(
                    FailureKind::ModelError,
                    "API Error: API returned an empty or malformed response".into(),
                ),
            ),
            (
                exited(1),
                api_error(Some(401), "Failed to authenticate. API Error: 401 bad key"),
                Outcome::Failed(
                    FailureKind::AuthError,
                    "Failed to authenticate. API Error: 401 bad key".into(),
                ),
            ),
            (
                exited(1),
                max_turns,
                Outcome::Failed(
                    FailureKind::AgentError,
                    "claude ended with error_max_turns".into(),
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
                    "claude printed nothing for 700 ms (idle watchdog); no result line".into(),
                ),
            ),
            (
                exited(0),
                none.clone(),
                Outcome::Failed(
                    FailureKind::AgentError,
                    "claude exited without a result line: boom".into(),
                ),
            ),
            (
                exited(3),
                none.clone(),
                Outcome::Failed(
                    FailureKind::AgentError,
                    "claude exited with code 3 without a result line: boom".into(),
                ),
            ),
            (
                Exit {
                    oom_killed: true,
                    ..exited(137)
                },
                none,
                Outcome::Failed(
                    FailureKind::OomKilled,
                    "claude was killed for running out of memory".into(),
                ),
            ),
        ];
        for (exit, stream, expected) in cases {
            assert_eq!(
                decide(&exit, &stream, "boom", 700),
                expected,
                "{exit:?} {stream:?}"
            );
        }
    }
}
