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
    /// Repair a damaged store file with redb's recovery and exit (the file as it was is kept
    /// beside it as FILE.damaged-TIMESTAMP); start again without --repair to serve.
    #[arg(long)]
    repair: bool,
    /// Remove runs that finished longer ago than this (e.g. `30d`), with their commands and
    /// events, in a bounded background sweep. Without it, runs are kept until deleted.
    #[arg(long, value_parser = retention)]
    retention: Option<Duration>,
    /// Attempts a run gets when it names none; then it ends `failed`.
    #[arg(long, default_value_t = crate::manager::protocol::DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::manager::protocol::MAX_ATTEMPTS_LIMIT)))]
    max_attempts: u32,
    /// The largest blob (an uploaded bundle, a result's file) the manager takes, e.g. `4GiB`.
    #[arg(long, default_value = "4GiB", value_parser = crate::config::parse_size)]
    max_blob_bytes: u64,
    /// How long an uploaded blob no run refers to is kept before it is removed, e.g. `1h`.
    #[arg(long, default_value = "1h", value_parser = crate::cli::runner::parse_duration_arg)]
    blob_grace: Duration,
    /// After a lease expires, how long before the run may be claimed again.
    #[arg(long, default_value = "1s", value_parser = crate::cli::runner::parse_duration_arg)]
    regrant_gap: Duration,
}

/// How long open requests may take to finish once the manager was told to stop.
const STOP_BOUND: Duration = Duration::from_secs(10);

fn retention(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("the retention must be longer than 0".into()),
        d => Ok(d),
    }
}

pub async fn manager(args: ManagerArgs, global: &super::Global) -> Result<ExitCode> {
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
    let token = match (args.token, global.token_file.clone()) {
        (Some(token), _) => token,
        (None, Some(file)) => std::fs::read_to_string(&file)
            .with_context(|| format!("could not read token file {}", file.display()))?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("give --token, AAC_MANAGER_TOKEN or --token-file"),
    };
    let policy = crate::manager::LeasePolicy {
        regrant_gap: args.regrant_gap,
        max_attempts: args.max_attempts,
    };
    let mut config = ManagerConfig::new(token)
        .with_policy(policy)
        .with_max_blob_bytes(args.max_blob_bytes)
        .with_blob_grace(args.blob_grace);
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
    // SIGTERM or SIGINT: stop accepting, end long-polls and streams, finish in-flight requests (at
    // most STOP_BOUND), release the store.
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
    let mut signals = crate::runner::shutdown::ProcessSignals::listen()
        .context("could not listen for signals")?;
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("manager shutting down");
        let _ = signalled_tx.send(());
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = serve_with_shutdown(listener, manager, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served?,
        _ = signalled => {
            let _ = stop_tx.send(());
            if tokio::time::timeout(STOP_BOUND, serve).await.is_err() {
                tracing::warn!(bound = ?STOP_BOUND, "requests still open; stopping anyway");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
