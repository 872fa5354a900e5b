//! The `shell` backend: each command's prompt is a shell script run with `sh -c` in the run's
//! workspace. Output lines stream as `output.stdout` / `output.stderr` events in the order they were
//! written; the exit code decides the turn's status (`aac_sdk::Exit::outcome`).
//!
//! Configuration (run or runtime `config`, all optional):
//! * `shell`: the interpreter, default `/bin/sh`;
//! * `timeout_ms`, `idle_timeout_ms`: limits per command;
//! * `env`: an object of extra environment variables.

use std::collections::BTreeMap;

use aac_sdk::{
    Backend, Command, CommandInfo, FailureKind, RunInfo, StartError, TurnResult, config, events,
};
use serde::Deserialize;

struct Shell {
    workspace: String,
    settings: Settings,
}

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "default_shell")]
    shell: String,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn default_shell() -> String {
    "/bin/sh".into()
}

impl Backend for Shell {
    fn start(run: RunInfo) -> Result<Self, StartError> {
        let settings = config::parse(&run.config_json, "").map_err(StartError::config)?;
        let workspace = run.workspace_dir;
        Ok(Shell {
            workspace,
            settings,
        })
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let settings = &self.settings;
        let exec = Command::new(&settings.shell)
            .args(["-c", &command.prompt])
            .cwd(&self.workspace)
            .envs(&settings.env)
            .timeout_ms(settings.timeout_ms)
            .idle_timeout_ms(settings.idle_timeout_ms);
        let mut process = match exec.spawn() {
            Ok(process) => process,
            Err(err) => return TurnResult::failed(FailureKind::AgentError, format!("{err:?}")),
        };
        for line in process.lines() {
            events::emit_output(line.stream, &line);
        }
        process.finish().outcome("the script").into()
    }
}

aac_sdk::export_backend!(Shell);
