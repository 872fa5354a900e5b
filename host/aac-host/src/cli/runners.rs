//! `aac-host runners …`: the fleet as the manager sees it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct RunnersArgs {
    /// The manager's base URL.
    #[arg(long, env = "AAC_MANAGER_URL", default_value = "http://127.0.0.1:7420")]
    manager_url: String,
    /// Bearer token.
    #[arg(long, env = "AAC_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token (instead of --token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: RunnersCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RunnersCommand {
    /// List registered runners: id, name, labels, version, last seen and last heartbeat, runs
    /// held (JSON).
    List,
}

pub async fn runners(args: RunnersArgs) -> Result<ExitCode> {
    let client = super::runs::connect(&args.manager_url, args.token, args.token_file)?;
    match args.command {
        RunnersCommand::List => {
            let runners = client.list_runners().await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "runners": runners }))?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
