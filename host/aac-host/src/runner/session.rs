//! A run's session: its workspace, its sandbox (warm from a pool or started cold) and its backend
//! session (one plugin Store), opened at the run's first command and reused by every later one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, warn};

use super::profile::RunProfile;
use crate::manager::protocol::{BundleRef, Command, Run};
use crate::outcome::{FailureKind, TurnEvent, TurnOutcome};
use crate::plugin::bindings::backend::aac::plugin::types::{CommandInfo, RunInfo};
use crate::plugin::capability::events::HostEvents;
use crate::plugin::materializer::{Bundle, MaterializeOptions, MaterializerPlugin};
use crate::plugin::{BackendPlugin, BackendSession, SessionOptions};
use crate::redact::Redactor;
use crate::sandbox::docker::labels;
use crate::sandbox::pool::{WarmPool, give_to_user, prepare_workspace};
use crate::sandbox::{EgressSpec, NetworkMode, ProcessLimits, Sandbox, SandboxDriver, SandboxSpec};
use aac_egress::{DroppedEvents, EventSink, NetworkEvent};

/// Where the workspace is mounted inside the sandbox.
pub const WORKSPACE_DIR: &str = "/workspace";

/// Where a run's sandbox comes from.
pub enum SandboxSource<'a> {
    /// A fresh container on `workspace`.
    Cold {
        driver: &'a dyn SandboxDriver,
        workspace: PathBuf,
    },
    /// A started container of the profile's warm pool, with the workspace it was created on.
    Pool(&'a WarmPool),
}

/// A run's bundle and the materializer that writes it into the workspace.
pub struct BundleJob<'a> {
    pub materializer: &'a MaterializerPlugin,
    pub bundle: &'a BundleRef,
    pub options: MaterializeOptions,
}

/// What opening a session needs besides the plugin and profile.
pub struct SessionRequest<'a> {
    pub run: &'a Run,
    /// Materialized into the workspace before the backend session starts (once per run).
    pub bundle: Option<BundleJob<'a>>,
    pub events: mpsc::UnboundedSender<TurnEvent>,
    /// The highest event sequence number already stored for the run (a re-claimed run goes on).
    pub last_event_seq: u64,
    pub cancel_grace: Duration,
    /// TERM → KILL grace of the turn's processes (from the lease budget).
    pub kill_grace: Duration,
    /// Cancelling it ends the materializer's and the plugin's `start` calls still running.
    pub cancel: CancellationToken,
}

pub struct RunSession {
    backend: BackendSession,
    sandbox: Arc<dyn Sandbox>,
    /// Turns the egress proxy's verdicts into run events (egress sandboxes only).
    network_events: Option<tokio::task::JoinHandle<()>>,
    pub workspace: PathBuf,
    /// Whether the sandbox came from a warm pool.
    pub warm: bool,
}

/// The sandbox of a run with this profile. (The driver labels it with its runner id.)
pub fn sandbox_spec(profile: &RunProfile, workspace: PathBuf) -> SandboxSpec {
    let user = profile
        .user
        .clone()
        .unwrap_or_else(crate::sandbox::sandbox_user);
    let mut spec = SandboxSpec::new(profile.image.clone(), workspace, user);
    spec.labels
        .insert(labels::RUNTIME.into(), profile.runtime.clone());
    spec.limits = profile.limits;
    spec.network = profile.network;
    spec.pull_policy = profile.pull_policy;
    spec.runtime = profile.oci_runtime.clone();
    spec.expires_at = SystemTime::now() + profile.max_duration;
    spec.env = profile
        .env
        .iter()
        .chain(&profile.secrets)
        .cloned()
        .collect();
    // A bound credential's name holds a placeholder, so CLIs that insist on it start.
    spec.env.extend(profile.credentials.names().map(|name| {
        (
            name.to_string(),
            aac_egress::credential::PLACEHOLDER.to_string(),
        )
    }));
    spec
}

impl RunSession {
    /// Opens the sandbox and the backend session. A failure is the outcome to report for the
    /// command that needed them (image missing, plugin refused to start…).
    pub async fn open(
        plugin: &BackendPlugin,
        profile: &RunProfile,
        source: SandboxSource<'_>,
        request: SessionRequest<'_>,
    ) -> Result<Self, TurnOutcome> {
        let mut network_events = None;
        let start_span = tracing::info_span!(
            "sandbox_start",
            otel.name = "sandbox start",
            runtime = %profile.runtime,
            warm = tracing::field::Empty,
        );
        let (sandbox, workspace, warm) = match source {
            SandboxSource::Pool(pool) => {
                let pooled = pool
                    .acquire()
                    .instrument(start_span.clone())
                    .await
                    .map_err(open_failed)?;
                start_span.record("warm", pooled.warm);
                let user = sandbox_spec(profile, pooled.workspace.clone()).user;
                if let Err(outcome) = materialize(&request, &pooled.workspace, &user).await {
                    remove(&pooled.sandbox).await;
                    return Err(outcome);
                }
                (pooled.sandbox, pooled.workspace, pooled.warm)
            }
            SandboxSource::Cold { driver, workspace } => {
                let mut spec = sandbox_spec(profile, workspace.clone());
                prepare_workspace(&workspace, &spec.user).map_err(open_failed)?;
                materialize(&request, &workspace, &spec.user).await?;
                spec.labels
                    .insert(labels::RUN.into(), request.run.id.clone());
                if spec.network == NetworkMode::Egress {
                    let (sink, verdicts) = EventSink::channel();
                    spec.egress = Some(EgressSpec {
                        allow: profile.egress_allow.clone(),
                        events: sink.clone(),
                        resolver: profile.egress_resolver.clone(),
                        credentials: profile.credentials.clone(),
                    });
                    network_events = Some((verdicts, sink.dropped()));
                }
                start_span.record("warm", false);
                (
                    driver
                        .open(&spec)
                        .instrument(start_span.clone())
                        .await
                        .map_err(open_failed)?,
                    workspace,
                    false,
                )
            }
        };
        let options = SessionOptions {
            run: RunInfo {
                run_id: request.run.id.clone(),
                runtime: profile.runtime.clone(),
                workspace_dir: WORKSPACE_DIR.into(),
                config_json: with_gateways(
                    profile.config_for(&request.run.config),
                    profile,
                    sandbox.as_ref(),
                )
                .to_string(),
            },
            sandbox: Some(sandbox.clone()),
            events: request.events,
            process_limits: ProcessLimits {
                kill_grace: request.kill_grace,
                ..process_limits(profile)
            },
            cancel_grace: request.cancel_grace,
            redactor: Redactor::new(profile.secrets.iter().map(|(_, value)| value.clone())),
            cancel: request.cancel.clone(),
        };
        match plugin.open_session(options).await {
            Ok(mut backend) => {
                backend.continue_events_after(request.last_event_seq);
                let network_events = network_events.map(|(verdicts, dropped)| {
                    tokio::spawn(forward_network_events(
                        verdicts,
                        dropped,
                        backend.host_events(),
                    ))
                });
                Ok(Self {
                    backend,
                    sandbox,
                    network_events,
                    workspace,
                    warm,
                })
            }
            Err(outcome) => {
                remove(&sandbox).await;
                Err(outcome)
            }
        }
    }

    /// Runs `command` as one turn of the session.
    pub async fn run_turn(&mut self, command: &Command, cancel: CancellationToken) -> TurnOutcome {
        let info = CommandInfo {
            command_id: command.id.clone(),
            sequence: command.seq,
            prompt: command.prompt.clone(),
            payload_json: command.payload.to_string(),
        };
        self.backend.run_turn(info, cancel).await
    }

    /// Emits a host event in the run's event sequence (see `BackendSession::push_host_event`).
    pub fn host_event(&mut self, kind: &str, payload: serde_json::Value) {
        self.backend.push_host_event(kind, payload);
    }

    /// Closes the backend session (waiting at most `wall`, and no longer once `stop` fires) and
    /// removes the sandbox.
    pub async fn close(self, wall: Duration, stop: &CancellationToken) {
        self.backend.close_within(wall, stop).await;
        remove(&self.sandbox).await;
        // The proxy is gone with the sandbox: its last verdicts are queued, the queue closed.
        if let Some(mut forwarder) = self.network_events
            && tokio::time::timeout(Duration::from_secs(2), &mut forwarder)
                .await
                .is_err()
        {
            forwarder.abort();
        }
    }
}

/// The backend config with `credential_gateways`: each bound credential's gateway URL as the
/// sandbox reaches it, for the plugin to use as the CLI's base URL. Set by the host only (a run's
/// own value is replaced), and only when the profile binds credentials.
fn with_gateways(
    mut config: serde_json::Value,
    profile: &RunProfile,
    sandbox: &dyn Sandbox,
) -> serde_json::Value {
    if let (Some(gateway), serde_json::Value::Object(map)) = (sandbox.egress_gateway(), &mut config)
        && !profile.credentials.is_empty()
    {
        map.insert(
            CREDENTIAL_GATEWAYS.into(),
            serde_json::json!(profile.credentials.urls(gateway)),
        );
    }
    config
}

/// The backend-config key the host sets to the gateway URL of each bound credential.
pub const CREDENTIAL_GATEWAYS: &str = "credential_gateways";

/// Adds each verdict of the egress proxy to the run's events (`network.allowed` /
/// `network.denied`), and a marker for verdicts the proxy's bounded queue dropped.
async fn forward_network_events(
    mut verdicts: tokio::sync::mpsc::Receiver<NetworkEvent>,
    dropped: DroppedEvents,
    events: HostEvents,
) {
    let mark_drops = || {
        let count = dropped.take();
        if count > 0 {
            events.push(
                crate::plugin::capability::events::DROPPED_KIND,
                serde_json::json!({
                    "dropped": count,
                    "reason": "the egress proxy's verdicts came faster than they could be recorded",
                }),
            );
        }
    };
    while let Some(verdict) = verdicts.recv().await {
        mark_drops();
        events.push(verdict.kind(), verdict.payload());
    }
    mark_drops();
}

/// The plugin host's description of a run's bundle (it does not speak the wire protocol).
pub fn plugin_bundle(bundle: &BundleRef) -> Bundle {
    Bundle {
        kind: bundle.kind.clone(),
        location: bundle.location.clone(),
        sha256: bundle.sha256.clone(),
        size: bundle.size,
    }
}

/// Writes the run's bundle (if any) into `workspace` and gives it to the sandbox user.
async fn materialize(
    request: &SessionRequest<'_>,
    workspace: &std::path::Path,
    user: &str,
) -> Result<(), TurnOutcome> {
    let Some(job) = &request.bundle else {
        return Ok(());
    };
    let options = MaterializeOptions {
        cancel: request.cancel.clone(),
        ..job.options.clone()
    };
    let summary = job
        .materializer
        .materialize(&plugin_bundle(job.bundle), workspace, &options)
        .await
        .map_err(|failure| {
            if request.cancel.is_cancelled() {
                TurnOutcome::cancelled(failure.message)
            } else {
                TurnOutcome::failed(failure.kind, failure.message)
            }
        })?;
    give_to_user(workspace, user)
        .map_err(|err| TurnOutcome::failed(FailureKind::HostError, format!("{err:#}")))?;
    tracing::info!(
        files = summary.files,
        bytes = summary.bytes,
        "bundle materialized"
    );
    Ok(())
}

/// Pids a session leaves free below the sandbox's limit: the container's init, the spare shell, and
/// every `docker exec` (the next process's and the kill helpers'), whose `runc init` runs a Go
/// runtime inside the container's cgroup and, on a loaded machine, has needed more than 6 threads.
/// With only 4 left, an exec near the cap failed as a broken wrapper instead of the policy's clear
/// "the session already holds N processes".
const PIDS_KEPT_FREE: i64 = 16;

/// Pids each open process costs at least: the program and the wrapper shell that waits for it to
/// report its exit (see aac-sandbox-docker's `exit_report`).
const PIDS_PER_PROCESS: i64 = 2;

/// The session's process policy: each open process costs at least [`PIDS_PER_PROCESS`] of the
/// sandbox's pids, and the sandbox needs [`PIDS_KEPT_FREE`] of them for itself, so a session holds
/// fewer processes than that.
fn process_limits(profile: &RunProfile) -> ProcessLimits {
    let defaults = ProcessLimits::default();
    let budget = profile
        .limits
        .pids
        .and_then(|pids| {
            usize::try_from(pids.saturating_sub(PIDS_KEPT_FREE) / PIDS_PER_PROCESS).ok()
        })
        .map_or(defaults.max_open, |pids| pids.max(1));
    ProcessLimits {
        max_open: defaults.max_open.min(budget),
        ..defaults
    }
}

fn open_failed(err: crate::sandbox::OpenError) -> TurnOutcome {
    TurnOutcome::failed(err.failure_kind(), format!("{err:#}"))
}

async fn remove(sandbox: &Arc<dyn Sandbox>) {
    if let Err(err) = sandbox.remove().await {
        warn!(error = %format!("{err:#}"), container = sandbox.id(), "could not remove the sandbox");
    }
}
