//! How a Claude Code turn ended: the process's exit plus its `result` line (if any) → terminal
//! status and failure kind. Pure; each row of docs/plugins/claude-code.md's failure table is tested.

use crate::stream::{ResultLine, StreamState};

/// How the `claude` process ended (the sandbox's exit status, without WIT types).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub killed: bool,
    /// `timeout`, `idle-timeout`, `cancelled` or `requested` when the host killed it.
    pub kill_reason: Option<String>,
    pub oom_killed: bool,
}

/// The failure kinds this backend reports (a subset of the WIT `failure-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    AgentError,
    ModelError,
    AuthError,
    TurnTimeout,
    OomKilled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Completed,
    Failed(Failure, String),
    Cancelled(String),
}

/// Decides a turn's end; `stderr_tail` explains a crash, `idle_timeout_ms` names the watchdog.
pub fn decide(
    exit: &Exit,
    stream: &StreamState,
    stderr_tail: &str,
    idle_timeout_ms: u64,
) -> Verdict {
    if exit.oom_killed {
        return Verdict::Failed(
            Failure::OomKilled,
            "claude was killed for running out of memory".into(),
        );
    }
    match (exit.kill_reason.as_deref(), &stream.result) {
        (Some("cancelled"), _) => return Verdict::Cancelled("the turn was cancelled".into()),
        // A CLI that printed its result and then hung has finished the turn: the result decides.
        (Some("idle-timeout"), Some(result)) => return from_result(result),
        // The CLI can hang without ever printing its result line: the watchdog ends the turn.
        (Some("idle-timeout"), None) => {
            return Verdict::Failed(
                Failure::TurnTimeout,
                format!(
                    "claude printed nothing for {idle_timeout_ms} ms (idle watchdog); no result line"
                ),
            );
        }
        (Some(reason), _) if exit.killed => {
            return Verdict::Failed(Failure::TurnTimeout, format!("claude was killed: {reason}"));
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
    Verdict::Failed(Failure::AgentError, message)
}

fn from_result(result: &ResultLine) -> Verdict {
    if !result.is_error && result.subtype == "success" {
        return Verdict::Completed;
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
            Failure::AuthError
        } else {
            Failure::ModelError
        };
        Verdict::Failed(failure, message)
    } else {
        Verdict::Failed(Failure::AgentError, message)
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
            kill_reason: Some(reason.into()),
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
        let cases: Vec<(Exit, StreamState, Verdict)> = vec![
            (exited(0), success.clone(), Verdict::Completed),
            (killed("idle-timeout"), success, Verdict::Completed),
            (
                exited(1),
                api_error(Some(500), "API Error: 500 boom"),
                Verdict::Failed(Failure::ModelError, "API Error: 500 boom".into()),
            ),
            (
                exited(1),
                api_error(
                    None,
                    "API Error: API returned an empty or malformed response",
                ),
                Verdict::Failed(
                    Failure::ModelError,
                    "API Error: API returned an empty or malformed response".into(),
                ),
            ),
            (
                exited(1),
                api_error(Some(401), "Failed to authenticate. API Error: 401 bad key"),
                Verdict::Failed(
                    Failure::AuthError,
                    "Failed to authenticate. API Error: 401 bad key".into(),
                ),
            ),
            (
                exited(1),
                max_turns,
                Verdict::Failed(
                    Failure::AgentError,
                    "claude ended with error_max_turns".into(),
                ),
            ),
            (
                killed("cancelled"),
                none.clone(),
                Verdict::Cancelled("the turn was cancelled".into()),
            ),
            (
                killed("idle-timeout"),
                none.clone(),
                Verdict::Failed(
                    Failure::TurnTimeout,
                    "claude printed nothing for 700 ms (idle watchdog); no result line".into(),
                ),
            ),
            (
                exited(0),
                none.clone(),
                Verdict::Failed(
                    Failure::AgentError,
                    "claude exited without a result line: boom".into(),
                ),
            ),
            (
                exited(3),
                none.clone(),
                Verdict::Failed(
                    Failure::AgentError,
                    "claude exited with code 3 without a result line: boom".into(),
                ),
            ),
            (
                Exit {
                    oom_killed: true,
                    ..exited(137)
                },
                none,
                Verdict::Failed(
                    Failure::OomKilled,
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
