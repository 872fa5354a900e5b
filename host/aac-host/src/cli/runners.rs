//! `aac-host runners …`: the fleet as the manager sees it.

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct RunnersArgs {
    /// Bearer token (else --token-file).
    #[arg(long, env = "AAC_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: RunnersCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RunnersCommand {
    /// List registered runners: id, name, labels, version, last seen and last heartbeat, runs
    /// held (JSON).
    List,
}

pub async fn runners(args: RunnersArgs, global: &super::Global) -> Result<ExitCode> {
    let client = super::runs::connect(global, args.token)?;
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
