//! The embedded manager's HTTP server (axum): protocol v1 over a [`Store`].
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use aac_manager::server::{Manager, ManagerConfig, start};
//! let manager = Manager::open("manager.redb", ManagerConfig::new("secret-token"))?;
//! let handle = start(manager).await?; // 127.0.0.1, any free port
//! println!("manager at {}", handle.url());
//! handle.shutdown().await?;
//! # Ok(()) }
//! ```

mod access;
mod access_log;
mod auth;
mod health;
mod janitor;
mod json_errors;
mod metrics;
mod notify;
mod results_routes;
mod routes;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::clock::{Clock, SystemClock};
use super::error::ManagerError;
use super::store::{LeasePolicy, Store};
use super::tokens::{Role, TokenSet};
pub use metrics::ManagerMetrics;
use notify::Hub;

/// How often the background sweep looks for work by default.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How a manager is set up.
#[derive(Clone)]
pub struct ManagerConfig {
    /// Bearer tokens and their roles (at least one); [`Manager::replace_tokens`] swaps them.
    pub tokens: TokenSet,
    /// Time for lease expiry; the system clock unless a test injects a manual one.
    pub clock: Arc<dyn Clock>,
    /// Safety gap before an expired lease is granted again, and the default `max_attempts`.
    pub policy: LeasePolicy,
    /// Finished runs older than this are removed with their commands and events (none: kept).
    pub retention: Option<Duration>,
    /// How often the background sweep looks for work (deletions, runs past the retention).
    pub sweep_interval: Duration,
    /// The largest blob (bundle, result file) `PUT /v1/blobs` takes.
    pub max_blob_bytes: u64,
    /// How long a blob no run refers to is kept before the sweep removes it.
    pub blob_grace: Duration,
    /// The level of the access log's lines: `info` for a manager people operate, `debug` for one
    /// embedded in `aac-host run`, whose requests all come from the same process.
    pub access_log_level: tracing::Level,
}

impl ManagerConfig {
    /// A manager with one admin token.
    pub fn new(token: impl Into<String>) -> Self {
        Self::with_tokens(TokenSet::single(Role::Admin, token))
    }

    /// A manager with `tokens`, each with its role.
    pub fn with_tokens(tokens: TokenSet) -> Self {
        Self {
            tokens,
            clock: Arc::new(SystemClock),
            policy: LeasePolicy::default(),
            retention: None,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            max_blob_bytes: crate::store::DEFAULT_MAX_BLOB_BYTES,
            blob_grace: crate::store::DEFAULT_BLOB_GRACE,
            access_log_level: tracing::Level::INFO,
        }
    }

    /// Logs each request at `level` instead of `info`.
    pub fn with_access_log_level(mut self, level: tracing::Level) -> Self {
        self.access_log_level = level;
        self
    }

    pub fn with_max_blob_bytes(mut self, max: u64) -> Self {
        self.max_blob_bytes = max;
        self
    }

    pub fn with_blob_grace(mut self, grace: Duration) -> Self {
        self.blob_grace = grace;
        self
    }

    /// Removes runs that finished longer than `retention` ago; the sweep then runs at least every
    /// tenth of the retention (between 1 s and a minute).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self.sweep_interval =
            (retention / 10).clamp(Duration::from_secs(1), DEFAULT_SWEEP_INTERVAL);
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_policy(mut self, policy: LeasePolicy) -> Self {
        self.policy = policy;
        self
    }
}

struct Inner {
    store: Store,
    hub: Arc<Hub>,
    tokens: RwLock<Arc<TokenSet>>,
    retention: Option<Duration>,
    sweep_interval: Duration,
    max_blob_bytes: u64,
    blob_grace: Duration,
    access_log_level: tracing::Level,
    metrics: ManagerMetrics,
}

/// The embedded manager: store, wake-ups and auth. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl Manager {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: impl AsRef<Path>, config: ManagerConfig) -> Result<Self, ManagerError> {
        let store = Store::open(path, config.clock.clone())?.with_policy(config.policy);
        let mut manager = Self::with_store(store, config.tokens)?;
        let inner = Arc::get_mut(&mut manager.inner).expect("not shared yet");
        inner.retention = config.retention;
        inner.sweep_interval = config.sweep_interval;
        inner.max_blob_bytes = config.max_blob_bytes;
        inner.blob_grace = config.blob_grace;
        inner.access_log_level = config.access_log_level;
        Ok(manager)
    }

    pub fn with_store(store: Store, tokens: TokenSet) -> Result<Self, ManagerError> {
        check_tokens(&tokens)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                hub: Arc::default(),
                tokens: RwLock::new(Arc::new(tokens)),
                retention: None,
                sweep_interval: DEFAULT_SWEEP_INTERVAL,
                max_blob_bytes: crate::store::DEFAULT_MAX_BLOB_BYTES,
                blob_grace: crate::store::DEFAULT_BLOB_GRACE,
                access_log_level: tracing::Level::INFO,
                metrics: ManagerMetrics::default(),
            }),
        })
    }

    /// Replaces the accepted tokens (a token file re-read); requests already admitted go on.
    pub fn replace_tokens(&self, tokens: TokenSet) -> Result<(), ManagerError> {
        check_tokens(&tokens)?;
        *self.inner.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
        Ok(())
    }

    /// The tokens accepted now.
    pub(crate) fn tokens(&self) -> Arc<TokenSet> {
        self.inner
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &ManagerMetrics {
        &self.inner.metrics
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    pub(crate) fn retention(&self) -> Option<Duration> {
        self.inner.retention
    }

    pub(crate) fn sweep_interval(&self) -> Duration {
        self.inner.sweep_interval
    }

    pub(crate) fn max_blob_bytes(&self) -> u64 {
        self.inner.max_blob_bytes
    }

    pub(crate) fn blob_grace(&self) -> Duration {
        self.inner.blob_grace
    }

    pub(crate) fn access_log_level(&self) -> tracing::Level {
        self.inner.access_log_level
    }

    /// How many runs have a long-poll or event stream waiting on them now (each such run holds
    /// one wake-up channel until its last waiter's request ends).
    pub fn watched_runs(&self) -> usize {
        self.inner.hub.watched_runs()
    }

    /// Runs `f` on the store off the async threads (redb commits fsync).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ManagerError> + Send + 'static,
    ) -> Result<T, ManagerError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ManagerError::Storage(format!("store task failed: {e}")))?
    }

    /// The protocol's routes, behind bearer-token auth, and the health probes and metrics,
    /// without; every request goes to the access log and the request metrics.
    pub fn router(&self) -> Router {
        routes::router(self.clone())
            .merge(health::router(self.clone()))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                access_log::log_request,
            ))
    }
}

fn check_tokens(tokens: &TokenSet) -> Result<(), ManagerError> {
    if tokens.is_empty() {
        return Err(ManagerError::BadRequest(
            "the manager needs at least one non-empty bearer token".into(),
        ));
    }
    Ok(())
}

/// Serves the protocol on `listener` until the process ends.
pub async fn serve(listener: TcpListener, manager: Manager) -> std::io::Result<()> {
    serve_with_shutdown(listener, manager, std::future::pending()).await
}

/// Serves on `listener` (a [`TcpListener`], or a [`tls::TlsListener`] for HTTPS) until `signal`
/// resolves; then long-polls and event streams end, in-flight requests
/// finish and the store is released.
pub async fn serve_with_shutdown<L>(
    listener: L,
    manager: Manager,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = manager.router();
    let closing = manager.clone();
    let janitor = janitor::Janitor::spawn(manager);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal.await;
            closing.hub().close();
        })
        .await;
    janitor.stop().await;
    served
}

/// A manager serving in the background (see [`start`]).
pub struct ManagerHandle {
    addr: SocketAddr,
    manager: Manager,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ManagerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL for [`super::client::ManagerClient`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The manager being served: its store, its waiters.
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// Stops serving and waits until the store file is released.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts the manager on `127.0.0.1` on a free port, in the background.
pub async fn start(manager: Manager) -> std::io::Result<ManagerHandle> {
    start_on(TcpListener::bind(("127.0.0.1", 0)).await?, manager)
}

/// Starts the manager on `listener`, in the background.
pub fn start_on(listener: TcpListener, manager: Manager) -> std::io::Result<ManagerHandle> {
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(listener, manager.clone(), async move {
        let _ = rx.await;
    }));
    Ok(ManagerHandle {
        addr,
        manager,
        shutdown: Some(tx),
        task,
    })
}
