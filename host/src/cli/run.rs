//! `aac-host run`: one local turn, configured by flags, or by a runtime profile of `aac.toml` with
//! flags overriding it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::output;
use crate::config::HostConfig;
use crate::local::{DEFAULT_IMAGE, LocalTurn, run_local_turn};
use crate::outcome::TerminalStatus;
use crate::plugin::PluginHost;
use crate::sandbox::docker::DockerDriver;
use crate::sandbox::{NetworkMode, PullPolicy, ResourceLimits};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The backend adapter (.wasm component). Required unless --runtime names a profile.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// A runtime profile of the config file, `NAME` or `NAME@VERSION`.
    #[arg(long)]
    runtime: Option<String>,
    /// The host config file with runtime profiles.
    #[arg(long, env = "AAC_CONFIG", default_value = "aac.toml")]
    config: PathBuf,
    /// Host directory used as the workspace (default: a fresh temporary directory).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Sandbox image (default: the profile's, else aac/busybox:latest).
    #[arg(long)]
    image: Option<String>,
    /// Backend configuration as a JSON object.
    #[arg(long, default_value = "{}")]
    backend_config: String,
    /// Network of the sandbox: none, bridge or per-run (default: the profile's, else none).
    #[arg(long)]
    network: Option<NetworkMode>,
    /// CPUs the sandbox may use (default: the profile's, else 2).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory limit in MiB, no swap beyond it (default: the profile's, else 2048).
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Process limit (default: the profile's, else 512).
    #[arg(long)]
    pids: Option<i64>,
    /// When the image may be pulled: never, if-not-present or always (default: the profile's,
    /// else never).
    #[arg(long)]
    pull: Option<PullPolicy>,
    /// Runner id written on containers; orphans of dead hosts with this id are removed at start.
    #[arg(long, default_value = "local", env = "AAC_RUNNER_ID")]
    runner_id: String,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// The prompt: the command the agent works on.
    prompt: String,
}

impl RunArgs {
    /// The turn these arguments describe, with a profile's settings under the flags.
    fn turn(&self) -> Result<LocalTurn> {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&self.backend_config)
            .map_err(|err| anyhow::anyhow!("--backend-config must be a JSON object: {err}"))?;
        let defaults = ResourceLimits::default();
        let mut turn = match &self.runtime {
            None => {
                let Some(plugin) = self.plugin.clone() else {
                    bail!(
                        "give --plugin PATH, or --runtime NAME with a runtime profile in {}",
                        self.config.display()
                    );
                };
                LocalTurn::new(plugin, self.prompt.clone())
            }
            Some(selector) => {
                let config = HostConfig::load(&self.config)?;
                let selected = config.select(selector)?;
                let profile = selected.profile;
                let plugin = self
                    .plugin
                    .clone()
                    .unwrap_or_else(|| profile.plugin.clone());
                let bytes = std::fs::read(&plugin)
                    .with_context(|| format!("could not read plugin file {}", plugin.display()))?;
                profile.verify_plugin(&bytes)?;
                LocalTurn {
                    image: selected.image.clone(),
                    limits: ResourceLimits {
                        cpus: profile.sandbox.cpus.or(defaults.cpus),
                        memory_bytes: profile.sandbox.memory_bytes.or(defaults.memory_bytes),
                        pids: profile.sandbox.pids.or(defaults.pids),
                    },
                    network: profile.sandbox.network,
                    pull_policy: profile.pull_policy,
                    max_duration: profile.max_session_duration,
                    env: profile.env.clone().into_iter().collect(),
                    secrets: profile.resolve_secrets()?,
                    user: profile.sandbox.user.clone(),
                    ..LocalTurn::new(plugin, self.prompt.clone())
                }
            }
        };
        turn.workspace = self.workspace.clone();
        turn.config_json = self.backend_config.clone();
        if let Some(image) = &self.image {
            turn.image = image.clone();
        } else if self.runtime.is_none() {
            turn.image = DEFAULT_IMAGE.into();
        }
        turn.limits.cpus = self.cpus.or(turn.limits.cpus);
        turn.limits.memory_bytes = self
            .memory_mib
            .map(|mib| mib << 20)
            .or(turn.limits.memory_bytes);
        turn.limits.pids = self.pids.or(turn.limits.pids);
        turn.network = self.network.unwrap_or(turn.network);
        turn.pull_policy = self.pull.unwrap_or(turn.pull_policy);
        Ok(turn)
    }
}

/// Exit codes: 0 completed, 1 failed, 3 blocked, 130 cancelled.
pub async fn run(host: &Arc<PluginHost>, args: RunArgs) -> Result<ExitCode> {
    let turn = args.turn()?;
    let json = args.json;
    let driver = DockerDriver::connect()
        .await?
        .with_runner_id(args.runner_id.clone())
        .with_progress(!json);
    let reaped = driver.reap_orphans(&args.runner_id).await?;
    if reaped > 0 {
        tracing::info!(reaped, "removed sandboxes left behind by a crashed host");
    }
    if !json && std::io::stderr().is_terminal() && !host.is_cached(&turn.plugin) {
        eprintln!(
            "compiling {} (cached for next time)…",
            turn.plugin.display()
        );
    }

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(output::print_events(events_rx, json));
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("cancelling the turn…");
                cancel.cancel();
            }
        }
    });
    let report = run_local_turn(host, &driver, turn, events_tx, cancel).await;
    let _ = printer.await;
    let report = report?;
    output::print_outcome(&report, json);
    Ok(ExitCode::from(match report.outcome.status {
        TerminalStatus::Completed => 0,
        TerminalStatus::Failed => 1,
        TerminalStatus::Blocked => 3,
        TerminalStatus::Cancelled => 130,
    }))
}
