//! The WIT glue: one session per run holding Claude's session id, one `claude -p` per turn.

use std::collections::VecDeque;
use std::time::Duration;

use aac_sdk::process::{Command, Stream};
use aac_sdk::{Backend, CommandInfo, FailureKind, RunInfo, TurnResult, events, log};

use crate::settings::Settings;
use crate::stream::Mapper;
use crate::verdict::{self, Exit, Failure, Verdict};

/// How many stderr lines are kept to explain a crash.
const STDERR_TAIL: usize = 5;

struct ClaudeCode {
    run: RunInfo,
    /// The session every later turn resumes (sessions live in `$HOME/.claude`, which the sandbox
    /// keeps for the whole run).
    session_id: Option<String>,
}

impl Backend for ClaudeCode {
    fn start(run: RunInfo) -> Result<Self, String> {
        // Refuse a bad config before any turn runs.
        Settings::from_json(&run.config_json, "{}")?;
        Ok(ClaudeCode {
            run,
            session_id: None,
        })
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let settings = match Settings::from_json(&self.run.config_json, &command.payload_json) {
            Ok(settings) => settings,
            Err(message) => return TurnResult::failed(FailureKind::AgentError, message),
        };
        let argv = settings.argv(&command.prompt, self.session_id.as_deref());
        let mut exec = Command::new(&argv[0])
            .args(&argv[1..])
            .cwd(&self.run.workspace_dir)
            .idle_timeout(Duration::from_millis(settings.idle_timeout_ms));
        for (key, value) in settings.env() {
            exec = exec.env(key, value);
        }
        if let Some(ms) = settings.timeout_ms {
            exec = exec.timeout(Duration::from_millis(ms));
        }
        let mut process = match exec.spawn() {
            Ok(process) => process,
            Err(err) => {
                return TurnResult::failed(
                    FailureKind::AgentError,
                    format!("could not start claude: {err:?}"),
                );
            }
        };
        log::debug(&format!(
            "command {} started (resume: {})",
            command.command_id,
            self.session_id.is_some()
        ));

        let mut mapper = Mapper::new();
        let mut mapped = Vec::new();
        let mut stderr_tail = VecDeque::new();
        while let Some(line) = process.next_line() {
            match line.stream {
                Stream::Stdout => {
                    mapper.map_line(&line.text, &mut mapped);
                    for event in mapped.drain(..) {
                        events::emit_raw(event.kind, event.payload.to_string());
                    }
                }
                Stream::Stderr => {
                    events::emit_output(Stream::Stderr, &line);
                    if stderr_tail.len() == STDERR_TAIL {
                        stderr_tail.pop_front();
                    }
                    stderr_tail.push_back(line.text);
                }
            }
        }
        let status = process.wait();
        events::emit(
            "process.exited",
            &serde_json::json!({
                "code": status.code,
                "killed": status.killed,
                "kill_reason": status.kill_reason,
                "oom_killed": status.oom_killed,
            }),
        );
        let exit = Exit {
            code: status.code,
            killed: status.killed,
            kill_reason: status.kill_reason,
            oom_killed: status.oom_killed,
        };

        let stream = mapper.state();
        if let Some(session_id) = &stream.session_id {
            self.session_id = Some(session_id.clone());
        }
        let stderr_tail = Vec::from(stderr_tail).join(" | ");
        let mut result =
            match verdict::decide(&exit, stream, &stderr_tail, settings.idle_timeout_ms) {
                Verdict::Completed => TurnResult::completed(),
                Verdict::Cancelled(message) => TurnResult::cancelled(message),
                Verdict::Failed(failure, message) => {
                    TurnResult::failed(failure_kind(failure), message)
                }
            };
        if let Some(session_id) = &self.session_id {
            result = result.with_thread_id(session_id);
        }
        if let Some(uuid) = stream.result.as_ref().and_then(|r| r.uuid.as_ref()) {
            result = result.with_turn_id(uuid);
        }
        result
    }
}

fn failure_kind(failure: Failure) -> FailureKind {
    match failure {
        Failure::AgentError => FailureKind::AgentError,
        Failure::ModelError => FailureKind::ModelError,
        Failure::AuthError => FailureKind::AuthError,
        Failure::TurnTimeout => FailureKind::TurnTimeout,
        Failure::OomKilled => FailureKind::OomKilled,
    }
}

aac_sdk::export_backend!(ClaudeCode);
