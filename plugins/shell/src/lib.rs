//! The `shell` backend: each command's prompt is a shell script run with `sh -c` in the run's
//! workspace. Output lines stream as `output.stdout` / `output.stderr` events in the order they were
//! written; the exit code decides the turn's status.
//!
//! Configuration (run or runtime `config`, all optional):
//! * `shell`: the interpreter, default `/bin/sh`;
//! * `timeout_ms`, `idle_timeout_ms`: limits per command;
//! * `env`: an object of extra environment variables.

use std::time::Duration;

use aac_sdk::process::Command;
use aac_sdk::{Backend, CommandInfo, FailureKind, RunInfo, TurnResult, events, log};

struct Shell {
    run: RunInfo,
    settings: Settings,
}

#[derive(Default)]
struct Settings {
    shell: Option<String>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    env: Vec<(String, String)>,
}

impl Settings {
    fn from_json(config_json: &str) -> Result<Self, String> {
        let config: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|err| format!("run config is not valid JSON: {err}"))?;
        let env = match config.get("env") {
            None => Vec::new(),
            Some(serde_json::Value::Object(vars)) => vars
                .iter()
                .map(|(key, value)| match value.as_str() {
                    Some(text) => Ok((key.clone(), text.to_string())),
                    None => Err(format!("config env.{key} must be a string")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("config `env` must be an object of strings".into()),
        };
        Ok(Self {
            shell: config
                .get("shell")
                .and_then(|v| v.as_str())
                .map(String::from),
            timeout_ms: config.get("timeout_ms").and_then(|v| v.as_u64()),
            idle_timeout_ms: config.get("idle_timeout_ms").and_then(|v| v.as_u64()),
            env,
        })
    }
}

impl Backend for Shell {
    fn start(run: RunInfo) -> Result<Self, String> {
        let settings = Settings::from_json(&run.config_json)?;
        Ok(Shell { run, settings })
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let shell = self.settings.shell.as_deref().unwrap_or("/bin/sh");
        let mut exec = Command::new(shell)
            .arg("-c")
            .arg(&command.prompt)
            .cwd(&self.run.workspace_dir);
        for (key, value) in &self.settings.env {
            exec = exec.env(key, value);
        }
        if let Some(ms) = self.settings.timeout_ms {
            exec = exec.timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = self.settings.idle_timeout_ms {
            exec = exec.idle_timeout(Duration::from_millis(ms));
        }

        let mut process = match exec.spawn() {
            Ok(process) => process,
            Err(err) => return TurnResult::failed(FailureKind::AgentError, format!("{err:?}")),
        };
        log::debug(&format!("command {} started", command.command_id));
        for line in process.lines() {
            events::emit_output(line.stream, &line);
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

        if status.oom_killed {
            TurnResult::failed(
                FailureKind::OomKilled,
                "the script was killed for running out of memory",
            )
        } else if status.kill_reason.as_deref() == Some("cancelled") {
            TurnResult::cancelled("the script was cancelled")
        } else if status.killed {
            let reason = status.kill_reason.unwrap_or_else(|| "killed".into());
            TurnResult::failed(
                FailureKind::TurnTimeout,
                format!("the script was killed: {reason}"),
            )
        } else {
            match status.code {
                Some(0) => TurnResult::completed(),
                Some(code) => TurnResult::failed(
                    FailureKind::AgentError,
                    format!("the script exited with code {code}"),
                ),
                None => TurnResult::failed(
                    FailureKind::AgentError,
                    "the script ended without an exit code",
                ),
            }
        }
    }
}

aac_sdk::export_backend!(Shell);
