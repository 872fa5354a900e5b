//! One turn on this machine, through the same code path as production: an embedded manager on
//! loopback (a fresh store in the temp dir), a run with one command, and a one-shot runner working
//! on it. Events are followed from the manager, as any client would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Grants;
use crate::manager::ManagerClient;
use crate::manager::protocol::{CreateRun, EnqueueCommand};
use crate::manager::results::CommandResult;
use crate::manager::server::{self, Manager, ManagerConfig};
use crate::outcome::{TurnEvent, TurnOutcome};
use crate::plugin::integrity::Integrity;
use crate::plugin::{PluginHost, PluginLimits};
use crate::runner::{Profiles, RunMode, RunProfile, Runner, RunnerConfig};
use crate::sandbox::lifetime::SessionLifetime;
pub use crate::sandbox::sandbox_user;
use crate::sandbox::{NetworkMode, PullPolicy, ResourceLimits, SandboxDriver};

pub use crate::runner::profile::DEFAULT_IMAGE;
pub use crate::runner::session::WORKSPACE_DIR;

/// The runner id of local runs: containers carry it, and the next local run reaps its orphans.
pub const LOCAL_RUNNER_ID: &str = "local";
/// The id of a local run's one command.
pub const LOCAL_COMMAND_ID: &str = "cmd-1";

/// One local turn.
#[derive(Clone, Debug)]
pub struct LocalTurn {
    pub plugin: PathBuf,
    /// The host directory to use as the workspace; a fresh one under the temp dir when `None`.
    pub workspace: Option<PathBuf>,
    pub image: String,
    pub prompt: String,
    /// Backend configuration, a JSON object.
    pub config_json: String,
    pub limits: ResourceLimits,
    pub network: NetworkMode,
    /// What an `egress` sandbox may reach (nothing when empty).
    pub egress_allow: Arc<aac_egress::Allowlist>,
    /// How the egress proxy resolves names.
    pub egress_resolver: aac_egress::Resolver,
    /// Secrets the egress gateway adds on the way out; the sandbox holds placeholders.
    pub credentials: Arc<aac_egress::Credentials>,
    pub pull_policy: PullPolicy,
    /// The engine's OCI runtime for the sandbox (`runsc`: gVisor).
    pub oci_runtime: Option<String>,
    /// The turn is stopped when the session's maximum duration is reached.
    pub max_duration: Duration,
    /// Environment of the sandbox's processes.
    pub env: Vec<(String, String)>,
    /// Secrets for the sandbox's processes: in their environment, never visible to the plugin,
    /// masked in events and logs.
    pub secrets: Vec<(String, String)>,
    /// `uid:gid` of the sandbox's processes; the caller's own (1000:1000 for root) when `None`.
    pub user: Option<String>,
    /// Limits of the plugin itself; the host's when `None`.
    pub plugin_limits: Option<PluginLimits>,
    /// What the plugin may do besides driving its sandbox (declared ∧ granted).
    pub grants: Grants,
    /// Pin and signature checks of the plugin file.
    pub integrity: Integrity,
    /// Fetch the turn's diff into the report (`aac-host run --diff`).
    pub fetch_diff: bool,
}

impl LocalTurn {
    /// A turn with the secure defaults: no network, 2 CPUs, 2 GiB, 512 pids, local images only.
    pub fn new(plugin: PathBuf, prompt: impl Into<String>) -> Self {
        Self {
            plugin,
            workspace: None,
            image: DEFAULT_IMAGE.into(),
            prompt: prompt.into(),
            config_json: "{}".into(),
            limits: ResourceLimits::default(),
            network: NetworkMode::None,
            egress_allow: Arc::default(),
            egress_resolver: Default::default(),
            credentials: Arc::default(),
            pull_policy: PullPolicy::Never,
            oci_runtime: None,
            max_duration: SessionLifetime::default().max_duration,
            env: Vec::new(),
            secrets: Vec::new(),
            user: None,
            plugin_limits: None,
            grants: Grants::default(),
            integrity: Integrity::default(),
            fetch_diff: false,
        }
    }

    fn profile(&self) -> RunProfile {
        RunProfile {
            image: self.image.clone(),
            limits: self.limits,
            network: self.network,
            egress_allow: self.egress_allow.clone(),
            egress_resolver: self.egress_resolver.clone(),
            credentials: self.credentials.clone(),
            oci_runtime: self.oci_runtime.clone(),
            pull_policy: self.pull_policy,
            env: self.env.clone(),
            secrets: self.secrets.clone(),
            user: self.user.clone(),
            max_duration: self.max_duration,
            plugin_limits: self.plugin_limits,
            grants: self.grants.clone(),
            integrity: self.integrity.clone(),
            ..RunProfile::new(self.plugin.clone())
        }
    }
}

pub struct LocalTurnReport {
    pub run_id: String,
    pub workspace: PathBuf,
    pub outcome: TurnOutcome,
    /// What the turn changed in the workspace, when its result was stored.
    pub result: Option<CommandResult>,
    /// The turn's git diff, when asked for (`fetch_diff`) and stored.
    pub diff: Option<Vec<u8>>,
}

/// Runs one turn. `Err` means the host could not run it at all (bad plugin file, no engine, no
/// manager); every other ending, including a missing image, is a [`TurnOutcome`] with its
/// failure kind.
pub async fn run_local_turn<D: SandboxDriver + Clone + 'static>(
    host: &Arc<PluginHost>,
    driver: &D,
    turn: LocalTurn,
    events: mpsc::Sender<TurnEvent>,
    cancel: CancellationToken,
) -> Result<LocalTurnReport> {
    // A bad plugin file is the caller's error, reported before any manager or sandbox starts.
    // Loaded once: the runner below uses this very plugin.
    let plugin = tokio::select! {
        plugin = host.load_backend_checked(&turn.plugin, &turn.integrity) => plugin?,
        () = cancel.cancelled() => anyhow::bail!("cancelled while loading {}", turn.plugin.display()),
    };
    let config_json: serde_json::Value = serde_json::from_str(&turn.config_json)
        .context("the backend configuration is not valid JSON")?;
    let run_id = format!("local-{}", uuid::Uuid::new_v4().simple());
    let scratch = std::env::temp_dir().join("aac-host").join(&run_id);
    let workspace = turn
        .workspace
        .clone()
        .unwrap_or_else(|| scratch.join("workspace"));

    let embedded = EmbeddedManager::start(&scratch).await?;
    let client = embedded.client.clone();
    let profile = turn.profile();
    client
        .create_run(CreateRun {
            id: Some(run_id.clone()),
            backend: profile.runtime.clone(),
            bundle: None,
            config: config_json,
            max_attempts: None,
            require_labels: Default::default(),
        })
        .await?;
    client
        .enqueue(
            &run_id,
            EnqueueCommand {
                id: Some(LOCAL_COMMAND_ID.into()),
                prompt: turn.prompt.clone(),
                payload: serde_json::json!({}),
            },
        )
        .await?;

    let mut config = RunnerConfig::new(LOCAL_RUNNER_ID);
    config.mode = RunMode::OneShot;
    config.workspace = Some(workspace.clone());
    let runner = Runner::new(
        client.clone(),
        host.clone(),
        Arc::new(driver.clone()),
        Profiles::Fixed(profile.clone()),
        config,
    )
    .with_plugin(&profile, plugin);
    runner.register().await?;

    let follower = tokio::spawn(forward_events(client.clone(), run_id.clone(), events));
    let canceller = tokio::spawn({
        let client = client.clone();
        let run_id = run_id.clone();
        async move {
            cancel.cancelled().await;
            if let Err(err) = client.cancel_run(&run_id).await {
                warn!(error = %err, "could not cancel the run");
            }
        }
    });
    // Boxed: the runner's future is deep, and callers nest this one in theirs.
    let result = Box::pin(runner.run(&run_id)).await;
    canceller.abort();
    let report = match result {
        Ok(report) => report,
        // Cancelled before the runner claimed it: the manager ended the run at once.
        Err(err)
            if client
                .get_run(&run_id)
                .await
                .is_ok_and(|run| run.status.is_terminal()) =>
        {
            follower.abort();
            embedded.stop(&scratch).await;
            return Ok(LocalTurnReport {
                run_id,
                workspace,
                outcome: TurnOutcome::cancelled(format!("cancelled before it started: {err}")),
                result: None,
                diff: None,
            });
        }
        Err(err) => {
            follower.abort();
            embedded.stop(&scratch).await;
            return Err(err.into());
        }
    };
    if report.reported {
        let _ = follower.await;
    } else {
        follower.abort();
    }
    let result = report.results.last().cloned();
    let diff = match result.as_ref().and_then(|r| r.diff_sha256.as_deref()) {
        Some(sha) if turn.fetch_diff => match client.get_blob(sha, MAX_LOCAL_DIFF_BYTES).await {
            Ok(diff) => Some(diff.to_vec()),
            Err(err) => {
                warn!(error = %err, "could not read the turn's diff");
                None
            }
        },
        _ => None,
    };
    embedded.stop(&scratch).await;
    let outcome = match report.commands.into_iter().next() {
        Some((_, outcome)) => outcome,
        None => report.outcome,
    };
    Ok(LocalTurnReport {
        run_id,
        workspace: report.workspace.unwrap_or(workspace),
        outcome,
        result,
        diff,
    })
}

/// Most bytes of a diff `aac-host run --diff` prints.
const MAX_LOCAL_DIFF_BYTES: u64 = 1 << 30;

/// The manager a local run talks to: on loopback, with a store file of its own.
struct EmbeddedManager {
    handle: server::ManagerHandle,
    client: ManagerClient,
}

impl EmbeddedManager {
    async fn start(scratch: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(scratch)
            .with_context(|| format!("could not create {}", scratch.display()))?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let db = scratch.join("manager.redb");
        // Its requests all come from this process: their access lines are for debugging only.
        let config = ManagerConfig::new(token.clone()).with_access_log_level(tracing::Level::DEBUG);
        let manager = Manager::open(&db, config)
            .with_context(|| format!("could not open the manager store {}", db.display()))?;
        let handle = server::start(manager)
            .await
            .context("could not start the embedded manager")?;
        let client = ManagerClient::new(handle.url(), token)?;
        Ok(Self { handle, client })
    }

    async fn stop(self, scratch: &std::path::Path) {
        if let Err(err) = self.handle.shutdown().await {
            warn!(error = %err, "the embedded manager did not stop cleanly");
        }
        let _ = std::fs::remove_file(scratch.join("manager.redb"));
        let _ = std::fs::remove_dir_all(scratch.join("manager.redb.blobs"));
    }
}

/// Copies the run's events, as the manager stores them, into `events` until the run ends. The
/// channel is bounded: a slow reader (a terminal, a pipe) slows the following down, it does not make
/// the host hold the turn's events.
async fn forward_events(client: ManagerClient, run_id: String, events: mpsc::Sender<TurnEvent>) {
    let mut stream = match client.follow_events(&run_id, 0).await {
        Ok(stream) => stream,
        Err(err) => {
            warn!(error = %err, "could not follow the run's events");
            return;
        }
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if events.send(event).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                warn!(error = %err, "following the run's events failed");
                return;
            }
        }
    }
}
