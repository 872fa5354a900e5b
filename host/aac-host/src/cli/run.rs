//! `aac-host run`: one local turn, configured by flags, or by a runtime profile of `aac.toml` with
//! flags overriding it. It goes through an embedded manager and a one-shot runner, like production.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::output;
use super::profile_args::ProfileArgs;
use crate::local::{LOCAL_COMMAND_ID, LOCAL_RUNNER_ID, LocalTurn, run_local_turn};
use crate::plugin::PluginHost;
use crate::runner::shutdown::ProcessSignals;
use crate::sandbox::docker::DockerDriver;
use crate::sandbox::transcript::{RecordedCommand, RecordingDriver};

/// After the first signal, how long the cancelled turn may take to end before the containers are
/// removed and the process exits anyway.
const ABORT_BOUND: Duration = Duration::from_secs(20);

/// Events between the manager's stream and the printer.
const EVENTS_IN_FLIGHT: usize = 1024;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub(super) profile: ProfileArgs,
    /// Host directory used as the workspace (default: a fresh temporary directory); a relative
    /// path is resolved against the current directory.
    #[arg(long, value_parser = super::values::directory)]
    workspace: Option<PathBuf>,
    /// Backend configuration as a JSON object.
    #[arg(long, default_value = "{}")]
    backend_config: String,
    /// Runner id written on containers; orphans of dead hosts with this id are removed at start.
    #[arg(long, default_value = LOCAL_RUNNER_ID, env = "AAC_RUNNER_ID")]
    runner_id: String,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Write a transcript of the turn to FILE (the processes the plugin started, their output and
    /// exits, the events): `aac-host plugin test PLUGIN --transcript FILE` replays it without Docker.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Print the turn's change to the workspace as a git diff (on stdout) after it ended.
    #[arg(long)]
    diff: bool,
    /// The prompt: the command the agent works on (`-` reads it from stdin).
    prompt: String,
}

impl RunArgs {
    /// The turn these arguments describe, with a profile's settings under the flags.
    fn turn(&self) -> Result<LocalTurn> {
        let overrides = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
            &self.backend_config,
        )
        .map_err(|err| anyhow::anyhow!("--backend-config must be a JSON object: {err}"))?;
        let profile = self.profile.profile()?;
        let config_json = profile
            .config_for(&serde_json::Value::Object(overrides))
            .to_string();
        Ok(LocalTurn {
            workspace: self.workspace.clone(),
            image: profile.image,
            config_json,
            limits: profile.limits,
            network: profile.network,
            egress_allow: profile.egress_allow,
            egress_resolver: profile.egress_resolver,
            credentials: profile.credentials,
            oci_runtime: profile.oci_runtime,
            pull_policy: profile.pull_policy,
            max_duration: profile.max_duration,
            env: profile.env,
            secrets: profile.secrets,
            user: profile.user,
            plugin_limits: profile.plugin_limits,
            grants: profile.grants,
            integrity: profile.integrity,
            fetch_diff: self.diff,
            ..LocalTurn::new(profile.plugin, self.prompt.clone())
        })
    }
}

/// Exit codes: 0 completed, 1 failed, 3 blocked, 130 cancelled.
pub async fn run(host: &Arc<PluginHost>, mut args: RunArgs) -> Result<ExitCode> {
    args.prompt = super::values::prompt(std::mem::take(&mut args.prompt))?;
    let turn = args.turn()?;
    let json = args.json;
    let docker = DockerDriver::connect()
        .await?
        .with_runner_id(args.runner_id.clone())
        .with_progress(!json);
    // Output is kept for a transcript only when one is asked for.
    let driver = if args.record.is_some() {
        RecordingDriver::new(docker)
    } else {
        RecordingDriver::passthrough(docker)
    };
    let reaped = driver.inner().reap_orphans(&args.runner_id).await?;
    if reaped > 0 {
        tracing::info!(reaped, "removed sandboxes left behind by a crashed host");
    }
    if !json && std::io::stderr().is_terminal() && !host.is_cached(&turn.plugin) {
        eprintln!(
            "compiling {} (cached for next time)…",
            turn.plugin.display()
        );
    }

    let (events_tx, events_rx) = mpsc::channel::<crate::outcome::TurnEvent>(EVENTS_IN_FLIGHT);
    // Each event is printed, and kept for the transcript only when one is recorded: a turn's
    // events are not held in memory otherwise (a 50 MB output is tens of thousands of them).
    let printer = tokio::spawn(output::print_events(events_rx, json, args.record.is_some()));
    let config_json = turn.config_json.clone();
    let prompt = turn.prompt.clone();
    // A transcript is a file people share: the profile's secret values never reach it.
    let redactor =
        crate::redact::Redactor::new(turn.secrets.iter().map(|(_, value)| value.clone()));
    // SIGTERM and SIGINT alike: the first cancels the turn (its container is removed as the run
    // ends); a second one, or the turn still running ABORT_BOUND later, removes the containers
    // and exits at once.
    let cancel = CancellationToken::new();
    let mut signals = ProcessSignals::listen().context("could not listen for signals")?;
    let (force_tx, force) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if !signals.next().await {
                return;
            }
            eprintln!("cancelling the turn… (signal again to stop at once)");
            cancel.cancel();
            let _ = tokio::time::timeout(ABORT_BOUND, signals.next()).await;
            let _ = force_tx.send(());
        }
    });
    let turn = run_local_turn(host, &driver, turn, events_tx, cancel);
    let report = tokio::select! {
        report = turn => report,
        Ok(()) = force => {
            if let Err(err) = driver.inner().remove_own().await {
                tracing::warn!(error = %format!("{err:#}"), "could not remove every container");
            }
            eprintln!("stopped before the turn ended");
            return Ok(ExitCode::from(130));
        }
    };
    // The sandbox's egress network (if any) is torn down in the background: wait for it.
    driver.inner().shutdown_egress().await;
    let events = printer.await.unwrap_or_default();
    let report = report?;
    if let Some(path) = &args.record {
        let command = RecordedCommand {
            id: LOCAL_COMMAND_ID.into(),
            prompt,
            payload: serde_json::json!({}),
        };
        let transcript = crate::replay::transcript(
            &config_json,
            vec![command],
            driver.processes(),
            &events,
            &[(LOCAL_COMMAND_ID.to_string(), report.outcome.clone())],
        );
        let mut value = serde_json::to_value(&transcript)?;
        redactor.redact_json(&mut value);
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the transcript {}", path.display()))?;
    }
    output::print_outcome(&report, json);
    if let Some(diff) = &report.diff {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(diff)?;
        out.flush()?;
    }
    Ok(output::exit_code(report.outcome.status))
}
