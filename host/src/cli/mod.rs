//! The `aac-host` command line.

mod output;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::plugin::{ArtifactCache, PluginHost, PluginHostConfig};

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
    Run(Box<run::RunArgs>),
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
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
        Command::Run(args) => run::run(&host, *args).await,
        Command::Plugin {
            command: PluginCommand::Inspect { path, json },
        } => {
            let inspection = host.inspect(&path).await?;
            output::print_inspection(&inspection, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
