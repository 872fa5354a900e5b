//! One turn on this machine, without a manager: load the plugin, open a sandbox on a workspace, run
//! the prompt as a command, and remove the sandbox on every path.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::outcome::{FailureKind, TurnEvent, TurnOutcome};
use crate::plugin::bindings::backend::aac::plugin::types::{CommandInfo, RunInfo};
use crate::plugin::{PluginHost, SessionOptions};
use crate::redact::Redactor;
use crate::sandbox::docker::labels;
use crate::sandbox::lifetime::SessionLifetime;
use crate::sandbox::pool::prepare_workspace;
use crate::sandbox::{
    NetworkMode, ProcessLimits, PullPolicy, ResourceLimits, SandboxDriver, SandboxSpec,
};

/// The image `cargo xtask image` builds, used when none is given.
pub const DEFAULT_IMAGE: &str = "aac/busybox:latest";
/// Where the workspace is mounted inside the sandbox.
pub const WORKSPACE_DIR: &str = "/workspace";

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
    pub pull_policy: PullPolicy,
    /// The turn is stopped when the session's maximum duration is reached.
    pub max_duration: Duration,
    /// Environment of the sandbox's processes.
    pub env: Vec<(String, String)>,
    /// Secrets for the sandbox's processes: in their environment, never visible to the plugin,
    /// masked in events and logs.
    pub secrets: Vec<(String, String)>,
    /// `uid:gid` of the sandbox's processes; the caller's own (1000:1000 for root) when `None`.
    pub user: Option<String>,
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
            pull_policy: PullPolicy::Never,
            max_duration: SessionLifetime::default().max_duration,
            env: Vec::new(),
            secrets: Vec::new(),
            user: None,
        }
    }
}

pub struct LocalTurnReport {
    pub run_id: String,
    pub workspace: PathBuf,
    pub outcome: TurnOutcome,
}

/// The `uid:gid` sandbox processes run as: the caller's own, or 1000:1000 when the caller is root
/// (a sandbox never runs as root).
pub fn sandbox_user() -> String {
    match std::fs::metadata("/proc/self") {
        Ok(meta) if meta.uid() != 0 => format!("{}:{}", meta.uid(), meta.gid()),
        _ => "1000:1000".into(),
    }
}

/// Runs one turn. `Err` means the host could not run it at all (bad plugin file, no engine); every
/// other ending, including a missing image, is a [`TurnOutcome`] with its failure kind.
pub async fn run_local_turn(
    host: &Arc<PluginHost>,
    driver: &dyn SandboxDriver,
    turn: LocalTurn,
    events: mpsc::UnboundedSender<TurnEvent>,
    cancel: CancellationToken,
) -> Result<LocalTurnReport> {
    let run_id = format!("local-{}", uuid::Uuid::new_v4().simple());
    let span = info_span!("run", run = %run_id);
    async {
        let plugin = host.load_backend(&turn.plugin).await?;
        let workspace = turn
            .workspace
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("aac-host").join(&run_id).join("workspace"));
        let user = turn.user.clone().unwrap_or_else(sandbox_user);
        prepare_workspace(&workspace, &user)?;
        let workspace = workspace
            .canonicalize()
            .with_context(|| format!("could not resolve workspace {}", workspace.display()))?;
        let report = |outcome| LocalTurnReport {
            run_id: run_id.clone(),
            workspace: workspace.clone(),
            outcome,
        };

        let mut spec = SandboxSpec::new(turn.image.clone(), workspace.clone(), user);
        spec.labels.insert(labels::RUN.into(), run_id.clone());
        spec.labels.insert(labels::RUNTIME.into(), plugin.identity().name.clone());
        spec.limits = turn.limits;
        spec.network = turn.network;
        spec.pull_policy = turn.pull_policy;
        spec.expires_at = SystemTime::now() + turn.max_duration;
        spec.env = turn.env.iter().chain(&turn.secrets).cloned().collect();
        let redactor = Redactor::new(turn.secrets.iter().map(|(_, value)| value.clone()));
        let sandbox = match driver.open(&spec).await {
            Ok(sandbox) => sandbox,
            Err(err) => {
                return Ok(report(TurnOutcome::failed(err.failure_kind(), format!("{err:#}"))));
            }
        };

        // The session's maximum duration bounds the turn.
        let lifetime_over = CancellationToken::new();
        let watchdog = tokio::spawn({
            let lifetime_over = lifetime_over.clone();
            let cancel = cancel.clone();
            let max = turn.max_duration;
            async move {
                tokio::time::sleep(max).await;
                lifetime_over.cancel();
                cancel.cancel();
            }
        });

        let outcome = async {
            let options = SessionOptions {
                run: RunInfo {
                    run_id: run_id.clone(),
                    runtime: plugin.identity().name.clone(),
                    workspace_dir: WORKSPACE_DIR.into(),
                    config_json: turn.config_json.clone(),
                },
                sandbox: Some(sandbox.clone()),
                events,
                process_limits: ProcessLimits::default(),
                cancel_grace: Duration::from_secs(10),
                redactor,
            };
            let mut session = match plugin.open_session(options).await {
                Ok(session) => session,
                Err(outcome) => return outcome,
            };
            let command = CommandInfo {
                command_id: "cmd-1".into(),
                sequence: 1,
                prompt: turn.prompt.clone(),
                payload_json: "{}".into(),
            };
            let outcome = session.run_turn(command, cancel).await;
            session.close().await;
            outcome
        }
        .await;
        watchdog.abort();
        let outcome = if lifetime_over.is_cancelled() {
            TurnOutcome::failed(
                FailureKind::TurnTimeout,
                format!("the session reached its maximum duration of {:?}", turn.max_duration),
            )
        } else {
            outcome
        };

        if let Err(err) = sandbox.remove().await {
            warn!(error = %format!("{err:#}"), container = sandbox.id(), "could not remove the sandbox");
        }
        Ok(report(outcome))
    }
    .instrument(span)
    .await
}
