//! `aac-host runs …`: the client side of the manager protocol, against any manager.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tracing::Instrument;

use crate::manager::ManagerClient;
use crate::manager::protocol::{CreateRun, EnqueueCommand, RunStatus};

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    /// Bearer token (else --token-file).
    #[arg(long, env = "AAC_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RunsCommand {
    /// Create a queued run for a backend profile (`shell`, `codex@0.169`…).
    Create {
        /// The backend profile: a runtime of the runners' config, `NAME` or `NAME@VERSION`.
        backend: String,
        /// Backend configuration as a JSON object (as `aac-host run --backend-config`).
        #[arg(long, default_value = "{}", value_name = "JSON")]
        backend_config: String,
        /// The old spelling of --backend-config (a JSON object, not a file); warns.
        #[arg(
            long = "config",
            hide = true,
            value_name = "JSON",
            conflicts_with = "backend_config"
        )]
        old_config: Option<String>,
        /// Attempts the run gets before it ends `failed` (the manager's default when absent).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// The workspace to start from: a directory (packed; a git work tree as `git ls-files
        /// -co --exclude-standard` lists it, plus its `.git`) or a bundle archive (`.tar`),
        /// uploaded to the manager before the run is created.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// A runner label the run needs, `KEY=VALUE` (repeat for more): only a runner registered
        /// with every one claims it.
        #[arg(long = "require", value_name = "KEY=VALUE", value_parser = super::values::label)]
        require: Vec<(String, String)>,
    },
    /// Enqueue a command (an agent turn) on a run.
    Enqueue {
        /// The run's id.
        run: String,
        /// The command for the agent (`-` reads it from stdin).
        prompt: String,
        /// Extra payload as a JSON object.
        #[arg(long, default_value = "{}")]
        payload: String,
    },
    /// Cancel a run, or one of its commands.
    Cancel {
        /// The run's id.
        run: String,
        /// Cancel only this command of the run (its id), not the run.
        #[arg(long)]
        command: Option<String>,
    },
    /// Show a run: its attempts, and each command's status and failure kind.
    Get {
        /// The run's id.
        run: String,
    },
    /// Delete a finished run with its commands and events (a run that has not ended is refused).
    Delete {
        /// The run's id.
        run: String,
    },
    /// List runs, optionally by status.
    List {
        /// Only runs with this status (queued, running, completed, failed, blocked, cancelled).
        #[arg(long)]
        status: Option<RunStatus>,
    },
    /// Print the run's change as a git diff (from its bundle to its last state, or of one
    /// command with --command): `aac-host runs diff RUN | git apply`.
    Diff {
        /// The run's id.
        run: String,
        /// Only this command's change (its id).
        #[arg(long)]
        command: Option<String>,
    },
    /// Write the files the run changed (their latest content) below --out; deleted files are
    /// listed on stderr, not removed.
    Files {
        /// The run's id.
        run: String,
        /// The directory to write the files below.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the stored results of the run's commands (what each changed) as JSON.
    Results {
        /// The run's id.
        run: String,
    },
    /// Print a run's events as JSON lines; `--follow` waits for more until the run ends.
    Events {
        /// The run's id.
        run: String,
        /// Only events with a sequence number above this one.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep printing new events until the run ends.
        #[arg(long)]
        follow: bool,
    },
}

fn json_object(flag: &str, text: &str) -> Result<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{flag} must be a JSON object"))?;
    if !value.is_object() {
        bail!("{flag} must be a JSON object, got {value}");
    }
    Ok(value)
}

fn print(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The run as the manager shows it, plus `commands`: each one's id, status and outcome.
async fn run_with_commands(client: &ManagerClient, run: &str) -> Result<serde_json::Value> {
    let shown = client.get_run(run).await?;
    let mut commands = Vec::new();
    let mut after = 0;
    loop {
        let batch = client
            .poll_commands(run, after, std::time::Duration::ZERO)
            .await?;
        let Some(last) = batch.commands.last() else {
            break;
        };
        after = last.seq;
        for command in batch.commands {
            let outcome = command.outcome.as_ref();
            commands.push(serde_json::json!({
                "id": command.id,
                "seq": command.seq,
                "status": command.status,
                "failure_kind": outcome.and_then(|o| o.failure_kind),
                "message": outcome.and_then(|o| o.message.clone()),
            }));
        }
    }
    let mut value = serde_json::to_value(shown)?;
    value["commands"] = serde_json::Value::Array(commands);
    Ok(value)
}

/// Where a client command finds its manager when `--manager-url` is not given.
pub const DEFAULT_MANAGER_URL: &str = "http://127.0.0.1:7420";

/// A client of the manager at `--manager-url` (else [`DEFAULT_MANAGER_URL`]), with the token
/// given, or read from `--token-file`.
pub(super) fn connect(global: &super::Global, token: Option<String>) -> Result<ManagerClient> {
    let url = global.manager_url.as_deref().unwrap_or(DEFAULT_MANAGER_URL);
    super::connect::client(global, url, token)
}

/// `client`, sending the W3C trace context of `span`: a child of `TRACEPARENT` when that is
/// set, recorded when an exporter is on; without an exporter, `TRACEPARENT` itself is passed on.
fn traced(client: ManagerClient, span: &tracing::Span) -> ManagerClient {
    use crate::telemetry::propagation;
    let inherited = propagation::from_env().unwrap_or_else(|why| {
        tracing::warn!("{why}; the run does not join that trace");
        None
    });
    propagation::join(span, inherited.as_ref());
    client.with_trace_context(propagation::outgoing(span, inherited))
}

pub async fn runs(args: RunsArgs, global: &super::Global) -> Result<ExitCode> {
    let client = connect(global, args.token)?;
    match args.command {
        RunsCommand::Create {
            backend,
            backend_config,
            old_config,
            max_attempts,
            bundle,
            require,
        } => {
            let config = match old_config {
                Some(json) => {
                    tracing::warn!(
                        "`runs create --config JSON` is deprecated: use --backend-config"
                    );
                    eprintln!(
                        "warning: `runs create --config` is now --backend-config (the same JSON                          object); --config names a TOML file everywhere else"
                    );
                    json_object("--config", &json)?
                }
                None => json_object("--backend-config", &backend_config)?,
            };
            // Uploaded first: a failed upload leaves no run behind.
            let bundle = match bundle {
                Some(path) => Some(super::results::upload_bundle(&client, &path).await?),
                None => None,
            };
            let span = tracing::info_span!("runs create", otel.kind = "client", backend = %backend);
            let client = traced(client, &span);
            print(
                &client
                    .create_run(CreateRun {
                        id: None,
                        backend,
                        bundle,
                        config,
                        max_attempts,
                        require_labels: require.into_iter().collect(),
                    })
                    .instrument(span)
                    .await?,
            )?;
        }
        RunsCommand::Enqueue {
            run,
            prompt,
            payload,
        } => {
            let prompt = super::values::prompt(prompt)?;
            let payload = json_object("--payload", &payload)?;
            let span = tracing::info_span!("runs enqueue", otel.kind = "client", run = %run);
            let client = traced(client, &span);
            print(
                &client
                    .enqueue(
                        &run,
                        EnqueueCommand {
                            id: None,
                            prompt,
                            payload,
                        },
                    )
                    .instrument(span)
                    .await?,
            )?;
        }
        RunsCommand::Cancel {
            run,
            command: Some(command),
        } => print(&client.cancel_command(&run, &command).await?)?,
        RunsCommand::Cancel { run, command: None } => print(&client.cancel_run(&run).await?)?,
        RunsCommand::Get { run } => print(&run_with_commands(&client, &run).await?)?,
        RunsCommand::Delete { run } => print(&client.delete_run(&run).await?)?,
        RunsCommand::List { status } => print(&client.list_runs(status).await?)?,
        RunsCommand::Diff { run, command } => {
            super::results::print_diff(&client, &run, command.as_deref()).await?;
        }
        RunsCommand::Files { run, out } => super::results::write_files(&client, &run, &out).await?,
        RunsCommand::Results { run } => print(&client.results(&run).await?)?,
        RunsCommand::Events { run, after, follow } => {
            if follow {
                let mut stream = client.follow_events(&run, after).await?;
                while let Some(event) = stream.next().await {
                    println!("{}", serde_json::to_string(&event?)?);
                }
            } else {
                for event in client.events(&run, after).await? {
                    println!("{}", serde_json::to_string(&event)?);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
