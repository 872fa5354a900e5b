//! The runner: takes runs from a manager and works on them.
//!
//! For one run ([`Runner::run`]): claim → one successful heartbeat before any work → heartbeat
//! every lease/3 with jitter ([`lease`]) while a long-poll watches for cancellation
//! ([`cancel_watch`]) → poll commands → ack → open the session on the first command ([`session`])
//! → run the turn, events streamed in batches ([`events`]) → flush → command status → next
//! command. The run ends when its commands are done (one-shot), when none arrived for the idle
//! timeout, when it is cancelled, when the runner drains ([`shutdown`]), or when the lease is lost;
//! then its terminal status is reported, after every event.
//!
//! Pool mode ([`Runner::serve`]) claims queued runs and works on up to `max_runs` at once.

pub mod cancel_watch;
pub mod events;
pub mod lease;
pub mod metrics;
mod pool_mode;
pub mod profile;
mod run_end;
pub mod session;
pub mod shutdown;
pub mod signals;
pub mod status;
pub mod status_server;
mod stop;
pub mod tool_spans;
pub mod traces;
mod work;
mod work_end;
mod work_results;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::Mutex;

pub use events::{BatchPolicy, ShipStats};
pub use pool_mode::{ServeReport, describe_unserved};
pub use profile::{DEFAULT_IMAGE, Profiles, RunProfile};
pub use shutdown::Shutdown;
pub use status::{RunnerStatus, StatusReport};

use crate::config::BundleSettings;
use crate::manager::protocol::RegisterRunner;
use crate::manager::{ClientError, ManagerClient};
use crate::outcome::{FailureKind, TerminalStatus, TurnOutcome};
use crate::plugin::materializer::MaterializerPlugin;
use crate::plugin::{BackendPlugin, PluginHost};
use crate::sandbox::SandboxDriver;
use crate::sandbox::pool::WarmPool;

/// How long a run waits for commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Run the commands queued when the run is claimed (and any that arrive meanwhile), then end.
    OneShot,
    /// Wait for commands until none arrived for the idle timeout.
    UntilIdle,
}

/// A runner's settings.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub runner_id: String,
    /// Lease length asked for on claim and renewed by each heartbeat.
    pub lease: Duration,
    pub mode: RunMode,
    /// Overrides the profile's session idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Each run's workspace is `<workspace_root>/<run id>/workspace`.
    pub workspace_root: PathBuf,
    /// One fixed workspace instead (a local run).
    pub workspace: Option<PathBuf>,
    /// How long a cancelled turn may take to return before it is abandoned.
    pub cancel_grace: Duration,
    pub batch: BatchPolicy,
    /// Longest single long-poll for commands.
    pub poll_wait: Duration,
    /// Most bytes (diffs and file contents) one command's result stores; past it the result is
    /// cut with a `result.truncated` event.
    pub result_bytes: u64,
    /// Keep each run's workspace after the run ended and its results are stored.
    pub keep_workspaces: bool,
    /// Labels registered with the manager besides `host` and `version` (which they override).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl RunnerConfig {
    pub fn new(runner_id: impl Into<String>) -> Self {
        Self {
            runner_id: runner_id.into(),
            lease: Duration::from_secs(60),
            mode: RunMode::UntilIdle,
            idle_timeout: None,
            workspace_root: std::env::temp_dir().join("aac-host").join("runs"),
            workspace: None,
            cancel_grace: Duration::from_secs(10),
            batch: BatchPolicy::default(),
            poll_wait: Duration::from_secs(30),
            result_bytes: crate::results::turn::DEFAULT_RESULT_BYTES,
            keep_workspaces: false,
            labels: Default::default(),
        }
    }
}

/// Why a runner could not start working on a run. Nothing was done on the run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not register runner {runner}: {source}")]
    Register { runner: String, source: ClientError },
    #[error("could not claim run {run}: {source}")]
    Claim { run: String, source: ClientError },
    #[error("the first heartbeat of run {run} failed, so no work was started: {reason}")]
    FirstHeartbeat { run: String, reason: String },
    #[error("the runner was shut down before it could claim run {run}")]
    ShutDown { run: String },
}

impl StartError {
    /// Another runner holds the run.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StartError::Claim { source, .. } if source.is_lease_conflict())
    }
}

/// How one run ended, as far as this runner saw it.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub run_id: String,
    /// The terminal status this runner reported (or would have, had it been able to).
    pub outcome: TurnOutcome,
    /// Each command this runner ran, in order, with its outcome.
    pub commands: Vec<(String, TurnOutcome)>,
    pub events: ShipStats,
    /// The manager accepted the terminal status.
    pub reported: bool,
    /// The host directory used as the run's workspace, once a session opened.
    pub workspace: Option<PathBuf>,
    /// Whether the run's sandbox came from a warm pool.
    pub warm_sandbox: bool,
    /// The attempt this runner's claim opened.
    pub attempt_id: String,
    /// Why the run was given back unfinished for another attempt (drain, shutdown, lost lease);
    /// `None` when this runner ended it.
    pub released: Option<String>,
    /// The result of each command this runner stored, in order.
    pub results: Vec<crate::manager::results::CommandResult>,
}

impl RunReport {
    pub fn status(&self) -> TerminalStatus {
        self.outcome.status
    }

    pub fn failure_kind(&self) -> Option<FailureKind> {
        self.outcome.failure_kind
    }

    pub fn is_released(&self) -> bool {
        self.released.is_some()
    }
}

/// A runner: one manager, one plugin host, one sandbox driver, any number of runs.
pub struct Runner {
    client: ManagerClient,
    host: Arc<PluginHost>,
    driver: Arc<dyn SandboxDriver>,
    profiles: Profiles,
    config: RunnerConfig,
    shutdown: Shutdown,
    /// Loaded plugins by runtime: compiled once per runner process.
    plugins: Mutex<HashMap<String, Arc<BackendPlugin>>>,
    /// Warm pools by runtime and image (pool mode).
    pools: Mutex<HashMap<String, Arc<WarmPool>>>,
    /// `[bundles]`: how runs' resource bundles reach their workspaces.
    bundles: Option<BundleSettings>,
    materializer: Mutex<Option<Arc<MaterializerPlugin>>>,
    /// Registration, manager reachability and held runs, for the status listener.
    status: Arc<RunnerStatus>,
    metrics: Arc<metrics::RunnerMetrics>,
}

impl Runner {
    pub fn new(
        client: ManagerClient,
        host: Arc<PluginHost>,
        driver: Arc<dyn SandboxDriver>,
        profiles: Profiles,
        config: RunnerConfig,
    ) -> Self {
        let profiles_bundles = match &profiles {
            Profiles::Config(config) => config.bundles.clone(),
            Profiles::Fixed(_) => None,
        };
        Self {
            client,
            host,
            driver,
            profiles,
            config,
            shutdown: Shutdown::new(),
            plugins: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
            bundles: profiles_bundles,
            materializer: Mutex::new(None),
            status: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Materializes runs' bundles with these settings (instead of the config's `[bundles]`).
    pub fn with_bundles(mut self, bundles: Option<BundleSettings>) -> Self {
        self.bundles = bundles;
        self
    }

    /// Uses `plugin`, already loaded from `profile.plugin`, for the runs of `profile` instead of
    /// loading it again on first use.
    pub fn with_plugin(mut self, profile: &RunProfile, plugin: BackendPlugin) -> Self {
        self.plugins
            .get_mut()
            .insert(plugin_key(profile), Arc::new(fitted(plugin, profile)));
        self
    }

    /// Uses `shutdown` (e.g. one wired to signals) instead of a private one.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    pub fn status(&self) -> &Arc<RunnerStatus> {
        &self.status
    }

    pub fn metrics(&self) -> &Arc<metrics::RunnerMetrics> {
        &self.metrics
    }

    /// The state the status listener shows: health, held runs and warm-pool fill.
    pub async fn status_report(&self) -> StatusReport {
        let pools = self
            .pools
            .lock()
            .await
            .iter()
            .map(|(key, pool)| status::PoolFill {
                pool: key.clone(),
                ready: pool.ready_count(),
                size: pool.size(),
            })
            .collect();
        self.status
            .report(self.shutdown.draining().is_cancelled(), pools)
    }

    /// Registers this runner with the manager (idempotent: the id is the runner id).
    pub async fn register(&self) -> Result<(), StartError> {
        let mut labels = std::collections::BTreeMap::new();
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            labels.insert("host".to_string(), host.trim().to_string());
        }
        labels.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        labels.extend(self.config.labels.clone());
        let registered = self
            .client
            .register_runner(RegisterRunner {
                id: Some(self.config.runner_id.clone()),
                name: self.config.runner_id.clone(),
                labels,
            })
            .await;
        match &registered {
            Ok(_) => self.status.set_registered(),
            Err(err) => self.status.manager_failed(err),
        }
        registered
            .map(|_| ())
            .map_err(|source| StartError::Register {
                runner: self.config.runner_id.clone(),
                source,
            })
    }

    /// Claims `run` and works on it until it ends. A claim conflict or a failed first heartbeat
    /// returns at once, without doing any work.
    pub async fn run(&self, run: &str) -> Result<RunReport, StartError> {
        let claimed_at = tokio::time::Instant::now();
        let claim = self
            .client
            .claim(run, &self.config.runner_id, self.config.lease);
        let lease = tokio::select! {
            lease = claim => lease.map_err(|source| StartError::Claim {
                run: run.to_string(),
                source,
            })?,
            () = self.shutdown.draining().cancelled() => {
                return Err(StartError::ShutDown { run: run.to_string() });
            }
        };
        self.work(lease, claimed_at).await
    }

    /// The profile's plugin, loaded on first use: integrity checked, compiled (or read from the
    /// cache), with the profile's limits and grants.
    async fn plugin(&self, profile: &RunProfile) -> Result<Arc<BackendPlugin>> {
        let key = plugin_key(profile);
        let mut plugins = self.plugins.lock().await;
        if let Some(plugin) = plugins.get(&key) {
            return Ok(plugin.clone());
        }
        let cached = self.host.is_cached(&profile.plugin);
        let loaded = self
            .host
            .load_backend_checked(&profile.plugin, &profile.integrity)
            .await;
        self.metrics.plugin_loaded(match (&loaded, cached) {
            (Err(_), _) => "failed",
            (Ok(_), true) => "cached",
            (Ok(_), false) => "compiled",
        });
        let plugin = Arc::new(fitted(loaded?, profile));
        plugins.insert(key, plugin.clone());
        Ok(plugin)
    }

    /// The bundle materializer, loaded (integrity checked, compiled or cached) on first use.
    async fn materializer(&self) -> Result<Option<(Arc<MaterializerPlugin>, &BundleSettings)>> {
        let Some(settings) = &self.bundles else {
            return Ok(None);
        };
        let mut slot = self.materializer.lock().await;
        if let Some(plugin) = slot.as_ref() {
            return Ok(Some((plugin.clone(), settings)));
        }
        let plugin = Arc::new(
            self.host
                .load_materializer(&settings.plugin, &settings.integrity())
                .await?,
        );
        *slot = Some(plugin.clone());
        Ok(Some((plugin, settings)))
    }

    /// Removes every pooled sandbox.
    pub async fn close_pools(&self) {
        let pools: Vec<_> = self.pools.lock().await.drain().map(|(_, p)| p).collect();
        for pool in pools {
            pool.shutdown().await;
        }
    }
}

/// Which loaded plugin serves `profile`.
fn plugin_key(profile: &RunProfile) -> String {
    format!("{}|{}", profile.runtime, profile.plugin.display())
}

/// `plugin` with `profile`'s grants and limits.
fn fitted(plugin: BackendPlugin, profile: &RunProfile) -> BackendPlugin {
    let plugin = plugin.with_grants(&profile.grants);
    match profile.plugin_limits {
        Some(limits) => plugin.with_limits(limits),
        None => plugin,
    }
}
