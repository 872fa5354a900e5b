//! `aac-host manager`: the embedded manager as a standalone process over a store file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::parse_duration;
use crate::manager::Store;
use crate::manager::server::tls::TlsListener;
use crate::manager::server::{Manager, ManagerConfig, serve_with_shutdown};

#[derive(clap::Args, Debug)]
pub struct ManagerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7420")]
    listen: std::net::SocketAddr,
    /// The store file (created when no file is there; an existing file is never replaced).
    #[arg(long, default_value = "aac-manager.redb")]
    db: PathBuf,
    /// A bearer token with the admin role (every endpoint); with --token-file, besides its
    /// tokens.
    #[arg(long, env = "AAC_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The server certificate chain (PEM) to serve HTTPS with; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    let sources = super::manager_auth::TokenSources {
        admin: args.token.clone(),
        file: global.token_file.clone(),
    };
    let tokens = sources.read()?;
    let tls = super::manager_auth::tls_config(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    let policy = crate::manager::LeasePolicy {
        regrant_gap: args.regrant_gap,
        max_attempts: args.max_attempts,
    };
    let mut config = ManagerConfig::with_tokens(tokens)
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
    let tls_config = tls.as_ref().map(|tls| tls.config.clone());
    sources
        .reload_on_sighup(manager.clone(), tls)
        .context("could not listen for SIGHUP")?;
    eprintln!(
        "manager listening on {}://{} (store {})",
        if tls_config.is_some() {
            "https"
        } else {
            "http"
        },
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
    let stopped = async {
        let _ = stop_rx.await;
    };
    let serve: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match tls_config {
            Some(tls) => Box::pin(serve_with_shutdown(
                TlsListener::new(listener, tls)?,
                manager,
                stopped,
            )),
            None => Box::pin(serve_with_shutdown(listener, manager, stopped)),
        };
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
