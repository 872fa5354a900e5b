//! `aac-host manager`: the embedded manager as a standalone process over a store file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::parse_duration;
use crate::manager::Store;
use crate::manager::server::{Manager, ManagerConfig, serve_with_shutdown};

#[derive(clap::Args, Debug)]
pub struct ManagerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7420")]
    listen: std::net::SocketAddr,
    /// The store file (created when no file is there; an existing file is never replaced).
    #[arg(long, default_value = "aac-manager.redb")]
    db: PathBuf,
    /// Bearer token clients and runners must present.
    #[arg(long, env = "AAC_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token (instead of --token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Repair a damaged store file with redb's recovery and exit (the file as it was is kept
    /// beside it as FILE.damaged-TIMESTAMP); start again without --repair to serve.
    #[arg(long)]
    repair: bool,
    /// Remove runs that finished longer ago than this (e.g. `30d`), with their commands and
    /// events, in a bounded background sweep. Without it, runs are kept until deleted.
    #[arg(long, value_parser = retention)]
    retention: Option<Duration>,
}

fn retention(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("the retention must be longer than 0".into()),
        d => Ok(d),
    }
}

pub async fn manager(args: ManagerArgs) -> Result<ExitCode> {
    if args.repair {
        let db = args.db.clone();
        // redb may panic on pages it cannot read; the repair reports that as its error, so the
        // panic's own message is not printed as well.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let report = tokio::task::spawn_blocking(move || Store::repair(&db)).await;
        std::panic::set_hook(hook);
        let report = report.context("the repair task failed")??;
        eprintln!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let token = match (args.token, args.token_file) {
        (Some(token), _) => token,
        (None, Some(file)) => std::fs::read_to_string(&file)
            .with_context(|| format!("could not read token file {}", file.display()))?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("give --token, AAC_MANAGER_TOKEN or --token-file"),
    };
    let mut config = ManagerConfig::new(token);
    if let Some(retention) = args.retention {
        config = config.with_retention(retention);
    }
    let manager = Manager::open(&args.db, config).context("the manager cannot start")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    eprintln!(
        "manager listening on http://{} (store {})",
        args.listen,
        args.db.display()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve_with_shutdown(listener, manager, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
