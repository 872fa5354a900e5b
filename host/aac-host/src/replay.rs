//! Replay tests of backends: `aac-host run --record FILE` writes a [`Transcript`] of a real turn
//! (the processes the plugin started in its sandbox, their output and exits, what it emitted), and
//! `aac-host plugin test PLUGIN --transcript FILE` runs the plugin again against that transcript on
//! a [`ReplaySandbox`] — no Docker, no agent CLI, no model — and compares what it emits now with
//! what it emitted then.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::outcome::{TurnEvent, TurnOutcome};
use crate::plugin::bindings::backend::aac::plugin::types::{CommandInfo, RunInfo};
use crate::plugin::{PluginHost, SessionOptions};
use crate::sandbox::ProcessLimits;
use crate::sandbox::transcript::{
    RecordedCommand, RecordedEvent, RecordedOutcome, RecordedProcess, ReplaySandbox,
    TRANSCRIPT_VERSION, Transcript,
};

/// How many differences a replay lists before it stops counting them one by one.
const MAX_LISTED: usize = 20;

/// Events the runner adds around a session (egress verdicts, results): not the plugin's doing,
/// so neither recorded nor compared.
pub fn added_by_the_runner(kind: &str) -> bool {
    kind.starts_with("network.") || kind.starts_with("result.")
}

/// A transcript of a run's commands: `outcomes` pairs each command id with how its turn ended.
pub fn transcript(
    config_json: &str,
    commands: Vec<RecordedCommand>,
    processes: Vec<RecordedProcess>,
    events: &[TurnEvent],
    outcomes: &[(String, TurnOutcome)],
) -> Transcript {
    let events = events
        .iter()
        .filter(|event| !added_by_the_runner(&event.kind))
        .map(|event| RecordedEvent {
            command_id: event.command_id.clone(),
            kind: event.kind.clone(),
            payload: event.payload.clone(),
        })
        .collect();
    Transcript {
        version: TRANSCRIPT_VERSION,
        config: serde_json::from_str(config_json).unwrap_or(serde_json::Value::Null),
        outcomes: outcomes
            .iter()
            .map(|(id, outcome)| recorded_outcome(id, outcome))
            .collect(),
        commands,
        processes,
        events,
    }
}

fn recorded_outcome(command_id: &str, outcome: &TurnOutcome) -> RecordedOutcome {
    RecordedOutcome {
        command_id: command_id.to_string(),
        status: outcome.status.to_string(),
        failure_kind: outcome.failure_kind.map(|kind| kind.as_str().to_string()),
    }
}

/// Reads a transcript file.
pub fn read_transcript(path: &Path) -> Result<Transcript> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading transcript {}", path.display()))?;
    Transcript::parse(&text).with_context(|| format!("transcript {}", path.display()))
}

/// What a replay found: every difference from the transcript, in order.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub differences: Vec<String>,
    /// Differences past [`MAX_LISTED`], counted only.
    pub more: usize,
    pub events: usize,
}

impl ReplayReport {
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }

    fn differ(&mut self, what: String) {
        if self.differences.len() < MAX_LISTED {
            self.differences.push(what);
        } else {
            self.more += 1;
        }
    }
}

/// Runs the backend at `plugin` against `transcript`: one session, its commands in order, the
/// processes answered from the transcript; compares the events and outcomes.
pub async fn replay(
    host: &Arc<PluginHost>,
    plugin: &Path,
    transcript: &Transcript,
) -> Result<ReplayReport> {
    let backend = host.load_backend(plugin).await?;
    let sandbox = Arc::new(ReplaySandbox::new(transcript));
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let options = SessionOptions {
        run: RunInfo {
            run_id: "replay".into(),
            runtime: "replay".into(),
            workspace_dir: "/workspace".into(),
            config_json: transcript.config.to_string(),
        },
        sandbox: Some(sandbox.clone()),
        events: events_tx,
        process_limits: ProcessLimits::default(),
        cancel_grace: Duration::from_secs(5),
        redactor: Default::default(),
        cancel: CancellationToken::new(),
    };
    let mut report = ReplayReport::default();
    let mut session = match backend.open_session(options).await {
        Ok(session) => session,
        Err(outcome) => {
            report.differ(format!("the session did not start: {outcome:?}"));
            return Ok(report);
        }
    };
    let mut outcomes = Vec::new();
    for (index, command) in transcript.commands.iter().enumerate() {
        let info = CommandInfo {
            command_id: command.id.clone(),
            sequence: index as u64 + 1,
            prompt: command.prompt.clone(),
            payload_json: command.payload.to_string(),
        };
        let outcome = session.run_turn(info, CancellationToken::new()).await;
        outcomes.push(recorded_outcome(&command.id, &outcome));
    }
    session.close().await;
    let mut emitted = Vec::new();
    while let Some(event) = events_rx.recv().await {
        if !added_by_the_runner(&event.kind) {
            emitted.push(event);
        }
    }
    report.events = emitted.len();
    compare_events(&mut report, &transcript.events, &emitted);
    for (recorded, now) in transcript.outcomes.iter().zip(&outcomes) {
        if recorded != now {
            report.differ(format!(
                "command {}: the turn ended {}, the transcript says {}",
                now.command_id,
                outcome_text(now),
                outcome_text(recorded)
            ));
        }
    }
    for mismatch in sandbox.mismatches() {
        report.differ(mismatch);
    }
    Ok(report)
}

fn compare_events(report: &mut ReplayReport, recorded: &[RecordedEvent], emitted: &[TurnEvent]) {
    for (index, (then, now)) in recorded.iter().zip(emitted).enumerate() {
        if then.kind != now.kind || then.payload != now.payload || then.command_id != now.command_id
        {
            report.differ(format!(
                "event {}: emitted {} {} {}, the transcript has {} {} {}",
                index + 1,
                now.command_id,
                now.kind,
                now.payload,
                then.command_id,
                then.kind,
                then.payload
            ));
        }
    }
    if emitted.len() != recorded.len() {
        report.differ(format!(
            "{} events emitted, the transcript has {}",
            emitted.len(),
            recorded.len()
        ));
    }
}

fn outcome_text(outcome: &RecordedOutcome) -> String {
    match &outcome.failure_kind {
        Some(kind) => format!("{} ({kind})", outcome.status),
        None => outcome.status.clone(),
    }
}
