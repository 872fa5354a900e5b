//! The WIT glue: one session per run holding the thread id, one `codex exec` process per turn.

use std::collections::VecDeque;
use std::time::Duration;

use aac_sdk::process::{Command, Stream};
use aac_sdk::{Backend, CommandInfo, FailureKind, RunInfo, TurnResult, events, log};

use crate::jsonl::Mapper;
use crate::settings::Settings;
use crate::verdict::{self, Exit, Failure, Verdict};

/// How many stderr lines are kept to explain a crash.
const STDERR_TAIL: usize = 5;

struct Codex {
    run: RunInfo,
    /// The thread every later turn resumes, once Codex has printed `thread.started`.
    thread_id: Option<String>,
    /// Turns run on that thread, for turn ids.
    turns: u64,
}

impl Backend for Codex {
    fn start(run: RunInfo) -> Result<Self, String> {
        // Refuse a bad config before any turn runs.
        Settings::from_json(&run.config_json, "{}")?;
        Ok(Codex {
            run,
            thread_id: None,
            turns: 0,
        })
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let settings = match Settings::from_json(&self.run.config_json, &command.payload_json) {
            Ok(settings) => settings,
            Err(message) => return TurnResult::failed(FailureKind::AgentError, message),
        };
        let argv = settings.argv(&command.prompt, self.thread_id.as_deref());
        let mut exec = Command::new(&argv[0])
            .args(&argv[1..])
            .cwd(&self.run.workspace_dir)
            .idle_timeout(Duration::from_millis(settings.idle_timeout_ms));
        for (key, value) in &settings.env {
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
                    format!("could not start codex: {err:?}"),
                );
            }
        };
        log::debug(&format!(
            "command {} started (resume: {})",
            command.command_id,
            self.thread_id.is_some()
        ));

        let mut mapper = Mapper::new();
        let mut mapped = Vec::new();
        let mut stderr_tail = VecDeque::new();
        while let Some(line) = process.next_line() {
            match line.stream {
                Stream::Stdout => {
                    mapper.map_line(&line.text, &mut mapped);
                    for event in mapped.drain(..) {
                        events::emit_raw(event.kind, event.payload);
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
        if let Some(thread_id) = &stream.thread_id
            && self.thread_id.as_ref() != Some(thread_id)
        {
            // A new thread (the first, or a fresh one after a turn that never started one).
            self.thread_id = Some(thread_id.clone());
            self.turns = 0;
        }
        self.turns += 1;
        let stderr_tail = Vec::from(stderr_tail).join(" | ");
        let result = match verdict::decide(&exit, stream, &stderr_tail, settings.idle_timeout_ms) {
            Verdict::Completed => TurnResult::completed(),
            Verdict::Cancelled(message) => TurnResult::cancelled(message),
            Verdict::Failed(failure, message) => TurnResult::failed(failure_kind(failure), message),
        };
        match &self.thread_id {
            // Codex 0.169 prints no turn id: turns are numbered within their thread.
            Some(thread_id) => result
                .with_thread_id(thread_id)
                .with_turn_id(format!("{thread_id}/{}", self.turns)),
            None => result,
        }
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

aac_sdk::export_backend!(Codex);
