//! The WIT glue: one session per run holding Claude's session id, one `claude -p` per turn.

use aac_sdk::{
    Backend, Command, CommandInfo, FailureKind, RunInfo, StartError, Stream, Tail, TurnResult,
    events, log,
};

use crate::settings::Settings;
use crate::stream::Mapper;
use crate::verdict;

struct ClaudeCode {
    run: RunInfo,
    /// The session every later turn resumes (sessions live in `$HOME/.claude`, which the sandbox
    /// keeps for the whole run).
    session_id: Option<String>,
}

impl Backend for ClaudeCode {
    fn start(run: RunInfo) -> Result<Self, StartError> {
        // Refuse a bad config before any turn runs.
        Settings::from_json(&run.config_json, "{}").map_err(StartError::config)?;
        Ok(ClaudeCode {
            run,
            session_id: None,
        })
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let settings = match Settings::from_json(&self.run.config_json, &command.payload_json) {
            Ok(settings) => settings,
            Err(message) => return TurnResult::failed(FailureKind::ConfigInvalid, message),
        };
        let argv = settings.argv(&command.prompt, self.session_id.as_deref());
        let exec = Command::new(&argv[0])
            .args(&argv[1..])
            .cwd(&self.run.workspace_dir)
            .envs(settings.env())
            .idle_timeout_ms(Some(settings.idle_timeout_ms))
            .timeout_ms(settings.timeout_ms);
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
        let mut stderr_tail = Tail::default();
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
                    stderr_tail.push(&line.text);
                }
            }
        }
        let exit = process.finish();

        let stream = mapper.state();
        if let Some(session_id) = &stream.session_id {
            self.session_id = Some(session_id.clone());
        }
        let mut result: TurnResult = verdict::decide(
            &exit,
            stream,
            &stderr_tail.joined(),
            settings.idle_timeout_ms,
        )
        .into();
        if let Some(session_id) = &self.session_id {
            result = result.with_thread_id(session_id);
        }
        if let Some(uuid) = stream.result.as_ref().and_then(|r| r.uuid.as_ref()) {
            result = result.with_turn_id(uuid);
        }
        result
    }
}

aac_sdk::export_backend!(ClaudeCode);
