//! The `aac-host` command line.

mod output;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::local::{DEFAULT_IMAGE, LocalTurn, run_local_turn};
use crate::outcome::TerminalStatus;
use crate::plugin::{ArtifactCache, PluginHost, PluginHostConfig};
use crate::sandbox::docker::DockerDriver;
use crate::sandbox::{NetworkMode, PullPolicy, ResourceLimits};

#[derive(Parser, Debug)]
#[command(
    name = "aac-host",
    version,
    about = "Host runner for AI coding-agent runs"
)]
struct Cli {
    /// Directory for compiled plugin artifacts (default: $AAC_CACHE_DIR or ~/.cache/aac-host).
    #[arg(long, global = true, env = "AAC_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the compiled-plugin cache.
    #[arg(long, global = true)]
    no_cache: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one agent turn locally: a plugin, a Docker sandbox and a workspace.
    Run {
        /// The backend adapter (.wasm component).
        #[arg(long)]
        plugin: PathBuf,
        /// Host directory used as the workspace (default: a fresh temporary directory).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// Sandbox image.
        #[arg(long, default_value = DEFAULT_IMAGE)]
        image: String,
        /// Backend configuration as a JSON object.
        #[arg(long, default_value = "{}")]
        config: String,
        #[command(flatten)]
        sandbox: SandboxArgs,
        /// Print events as JSON lines.
        #[arg(long)]
        json: bool,
        /// The prompt: the command the agent works on.
        prompt: String,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// Sandbox settings of a local run (a runtime profile sets them for managed runs).
#[derive(clap::Args, Debug)]
struct SandboxArgs {
    /// Network of the sandbox: none, bridge or per-run.
    #[arg(long, default_value = "none")]
    network: NetworkMode,
    /// CPUs the sandbox may use.
    #[arg(long, default_value_t = 2.0)]
    cpus: f64,
    /// Memory limit in MiB (no swap beyond it).
    #[arg(long, default_value_t = 2048)]
    memory_mib: u64,
    /// Process limit.
    #[arg(long, default_value_t = 512)]
    pids: i64,
    /// When the image may be pulled: never, if-not-present or always.
    #[arg(long, default_value = "never")]
    pull: PullPolicy,
    /// Maximum duration of the session, in seconds.
    #[arg(long, default_value_t = 8 * 3600)]
    max_duration_secs: u64,
    /// Runner id written on containers; orphans of dead hosts with this id are removed at start.
    #[arg(long, default_value = "local", env = "AAC_RUNNER_ID")]
    runner_id: String,
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Show a plugin's world, WIT version, imports, exports, size and cache state.
    Inspect {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 completed, 1 failed, 3 blocked, 130 cancelled, 2 the host itself failed.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,plugin=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = PluginHostConfig {
        cache_dir: if cli.no_cache {
            None
        } else {
            cli.cache_dir.or_else(ArtifactCache::default_dir)
        },
        ..PluginHostConfig::default()
    };
    let host = PluginHost::new(config)?;
    match cli.command {
        Command::Run {
            plugin,
            workspace,
            image,
            config,
            sandbox,
            json,
            prompt,
        } => {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&config)
                .map_err(|err| anyhow::anyhow!("--config must be a JSON object: {err}"))?;
            let driver = DockerDriver::connect()
                .await?
                .with_runner_id(sandbox.runner_id.clone())
                .with_progress(!json);
            let reaped = driver.reap_orphans(&sandbox.runner_id).await?;
            if reaped > 0 {
                tracing::info!(reaped, "removed sandboxes left behind by a crashed host");
            }
            if !json && std::io::stderr().is_terminal() && !host.is_cached(&plugin) {
                eprintln!("compiling {} (cached for next time)…", plugin.display());
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
            let turn = LocalTurn {
                workspace,
                image,
                config_json: config,
                limits: ResourceLimits {
                    cpus: Some(sandbox.cpus),
                    memory_bytes: Some(sandbox.memory_mib << 20),
                    pids: Some(sandbox.pids),
                },
                network: sandbox.network,
                pull_policy: sandbox.pull,
                max_duration: Duration::from_secs(sandbox.max_duration_secs),
                ..LocalTurn::new(plugin, prompt)
            };
            let report = run_local_turn(&host, &driver, turn, events_tx, cancel).await;
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
        Command::Plugin {
            command: PluginCommand::Inspect { path, json },
        } => {
            let inspection = host.inspect(&path).await?;
            output::print_inspection(&inspection, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
