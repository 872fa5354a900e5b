//! The WIT glue: one session per run holding the thread id, one `codex exec` process per turn.

use aac_sdk::{
    Backend, Command, CommandInfo, FailureKind, RunInfo, StartError, Stream, Tail, TurnResult,
    events, log,
};

use crate::jsonl::Mapper;
use crate::settings::Settings;
use crate::verdict;

struct Codex {
    run: RunInfo,
    /// The thread every later turn resumes, once Codex has printed `thread.started`.
    thread_id: Option<String>,
    /// Turns run on that thread, for turn ids.
    turns: u64,
}

impl Backend for Codex {
    fn start(run: RunInfo) -> Result<Self, StartError> {
        // Refuse a bad config before any turn runs.
        Settings::from_json(&run.config_json, "{}").map_err(StartError::config)?;
        Ok(Codex {
            run,
            thread_id: None,
            turns: 0,
        })
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let settings = match Settings::from_json(&self.run.config_json, &command.payload_json) {
            Ok(settings) => settings,
            Err(message) => return TurnResult::failed(FailureKind::ConfigInvalid, message),
        };
        let argv = settings.argv(&command.prompt, self.thread_id.as_deref());
        let exec = Command::new(&argv[0])
            .args(&argv[1..])
            .cwd(&self.run.workspace_dir)
            .envs(&settings.env)
            .idle_timeout_ms(Some(settings.idle_timeout_ms))
            .timeout_ms(settings.timeout_ms);
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
        let mut stderr_tail = Tail::default();
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
                    stderr_tail.push(&line.text);
                }
            }
        }
        let exit = process.finish();

        let stream = mapper.state();
        if let Some(thread_id) = &stream.thread_id
            && self.thread_id.as_ref() != Some(thread_id)
        {
            // A new thread (the first, or a fresh one after a turn that never started one).
            self.thread_id = Some(thread_id.clone());
            self.turns = 0;
        }
        self.turns += 1;
        let result: TurnResult = verdict::decide(
            &exit,
            stream,
            &stderr_tail.joined(),
            settings.idle_timeout_ms,
        )
        .into();
        match &self.thread_id {
            // Codex 0.169 prints no turn id: turns are numbered within their thread.
            Some(thread_id) => result
                .with_thread_id(thread_id)
                .with_turn_id(format!("{thread_id}/{}", self.turns)),
            None => result,
        }
    }
}

aac_sdk::export_backend!(Codex);
