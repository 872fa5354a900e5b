//! One turn on this machine, without a manager: load the plugin, open a sandbox on a workspace, run
//! the prompt as a command, and remove the sandbox on every path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::outcome::{TurnEvent, TurnOutcome};
use crate::plugin::bindings::backend::aac::plugin::types::{CommandInfo, RunInfo};
use crate::plugin::{PluginHost, SessionOptions};
use crate::sandbox::{ProcessLimits, SandboxDriver, SandboxSpec};

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
}

pub struct LocalTurnReport {
    pub run_id: String,
    pub workspace: PathBuf,
    pub outcome: TurnOutcome,
}

/// The `uid:gid` sandbox processes run as: the caller's own, or 1000:1000 when the caller is root
/// (a sandbox never runs as root).
pub fn sandbox_user() -> (u32, u32) {
    match std::fs::metadata("/proc/self") {
        Ok(meta) if meta.uid() != 0 => (meta.uid(), meta.gid()),
        _ => (1000, 1000),
    }
}

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
        let workspace = prepare_workspace(turn.workspace.clone(), &run_id)?;
        let (uid, gid) = sandbox_user();
        let spec = SandboxSpec {
            image: turn.image.clone(),
            workspace_host_dir: workspace.clone(),
            workspace_dir: WORKSPACE_DIR.into(),
            user: format!("{uid}:{gid}"),
            labels: BTreeMap::from([
                ("dev.aac-host.run".to_string(), run_id.clone()),
                ("dev.aac-host.runner".to_string(), "local".to_string()),
            ]),
            env: vec![("HOME".into(), "/tmp".into())],
            network: "none".into(),
        };
        let sandbox = driver.open(&spec).await?;

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

        if let Err(err) = sandbox.remove().await {
            warn!(error = %format!("{err:#}"), container = sandbox.id(), "could not remove the sandbox");
        }
        Ok(LocalTurnReport {
            run_id: run_id.clone(),
            workspace,
            outcome,
        })
    }
    .instrument(span)
    .await
}

fn prepare_workspace(requested: Option<PathBuf>, run_id: &str) -> Result<PathBuf> {
    let dir = requested.unwrap_or_else(|| {
        std::env::temp_dir()
            .join("aac-host")
            .join(run_id)
            .join("workspace")
    });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create workspace {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("could not resolve workspace {}", dir.display()))?;
    let (uid, gid) = sandbox_user();
    let meta = std::fs::metadata(&dir)?;
    if meta.uid() != uid {
        // The sandbox user must be able to write its workspace; only root can hand it over.
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .with_context(|| format!("could not give workspace {} to uid {uid}", dir.display()))?;
    }
    Ok(dir)
}
