//! The `aac-host` command line.

mod manager;
mod output;
mod profile_args;
mod results;
mod run;
mod runner;
mod runs;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::plugin::{ArtifactCache, PluginHost, PluginHostConfig};

#[derive(Parser, Debug)]
#[command(
    name = "aac-host",
    version,
    about = "Host runner for AI coding-agent runs",
    long_about = "Host runner for AI coding-agent runs.\n\n\
        Runner mode (no subcommand): aac-host --plugin codex.wasm --manager-url URL --run-id ID \
        works on one run; --max-runs N claims queued runs and works on up to N at once."
)]
struct Cli {
    /// Directory for compiled plugin artifacts (default: $AAC_CACHE_DIR or ~/.cache/aac-host).
    #[arg(long, global = true, env = "AAC_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the compiled-plugin cache.
    #[arg(long, global = true)]
    no_cache: bool,

    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    runner: runner::RunnerArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one agent turn locally: a plugin, a Docker sandbox and a workspace.
    Run(Box<run::RunArgs>),
    /// Run the embedded manager: the whole v1 protocol over a durable store.
    Manager(manager::ManagerArgs),
    /// Create, enqueue, cancel, inspect and follow runs on a manager.
    Runs(runs::RunsArgs),
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Show a plugin's world, WIT version, imports, exports, size, cache state and capabilities
    /// (declared; with --config also granted, effective, and the integrity checks).
    Inspect {
        path: PathBuf,
        #[arg(long)]
        json: bool,
        /// aac.toml: show what it grants the plugin and check its pin and signature.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The runtime whose grants apply (default: [bundles] for a materializer).
        #[arg(long, requires = "config")]
        runtime: Option<String>,
    },
    /// Run a backend against a transcript recorded with `aac-host run --record` (no Docker, no
    /// agent CLI) and compare what it emits with what the transcript says. Exit 0 when they match,
    /// 1 when they differ.
    Test {
        /// The backend plugin (.wasm).
        plugin: PathBuf,
        /// The transcript (JSON) to replay.
        #[arg(long)]
        transcript: PathBuf,
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
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,plugin=info"));
    // Colours only for a terminal: piped into a file or a log collector, lines stay plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            !is_wire_dump(meta)
        }));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Debug and trace lines of the Docker and HTTP client libraries print whole request and response
/// bodies — a container's `Env`, so secret values — and are never shown, whatever `AAC_LOG` says.
fn is_wire_dump(meta: &tracing::Metadata<'_>) -> bool {
    const WIRE_LEVEL_CRATES: [&str; 6] =
        ["bollard", "hyper", "hyper_util", "h2", "reqwest", "rustls"];
    *meta.level() > tracing::Level::INFO
        && WIRE_LEVEL_CRATES.iter().any(|name| {
            meta.target()
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
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
    // Only the commands that load plugins pay for an engine.
    let plugin_host = || PluginHost::new(config.clone());
    // Hosts that run plugins take the config file's `[limits]`.
    let plugin_host_with = |limits: Option<crate::plugin::PluginLimits>| {
        PluginHost::new(PluginHostConfig {
            limits: limits.unwrap_or(config.limits),
            ..config.clone()
        })
    };
    if cli.command.is_some() && cli.runner.names_work() {
        anyhow::bail!("runner-mode flags (--run-id, --max-runs) go without a subcommand");
    }
    let Some(command) = cli.command else {
        if !cli.runner.wanted() {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            return Ok(ExitCode::from(2));
        }
        let limits = cli.runner.profile.host_limits()?;
        return runner::run(plugin_host_with(limits)?, cli.runner).await;
    };
    match command {
        Command::Run(args) => {
            let limits = args.profile.host_limits()?;
            run::run(&plugin_host_with(limits)?, *args).await
        }
        Command::Runs(args) => runs::runs(args).await,
        Command::Manager(args) => manager::manager(args).await,
        Command::Plugin {
            command:
                PluginCommand::Inspect {
                    path,
                    json,
                    config,
                    runtime,
                },
        } => {
            let mut inspection = plugin_host()?.inspect(&path).await?;
            if let Some(config) = config {
                inspection = output::apply_config(inspection, &config, runtime.as_deref())?;
            }
            output::print_inspection(&inspection, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Test { plugin, transcript },
        } => replay_test(&plugin_host()?, &plugin, &transcript).await,
    }
}

/// `aac-host plugin test`: prints each difference, or how much matched.
async fn replay_test(
    host: &std::sync::Arc<PluginHost>,
    plugin: &std::path::Path,
    transcript: &std::path::Path,
) -> Result<ExitCode> {
    let recorded = crate::replay::read_transcript(transcript)?;
    let report = crate::replay::replay(host, plugin, &recorded).await?;
    if report.matches() {
        println!(
            "ok: {} command(s), {} process(es), {} event(s) as in {}",
            recorded.commands.len(),
            recorded.processes.len(),
            report.events,
            transcript.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for difference in &report.differences {
        println!("differs: {difference}");
    }
    if report.more > 0 {
        println!("… and {} more differences", report.more);
    }
    Ok(ExitCode::from(1))
}
