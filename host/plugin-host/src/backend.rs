//! Backend adapters: a compiled plugin ready to instantiate, and one session (one Store) per run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};
use wasmtime::Store;
use wasmtime::component::{Component, ResourceAny};

use super::bindings::ContractVersion;
use super::bindings::backend::aac::plugin::types as wit;
use super::bindings::backend::aac::plugin::types::PluginInfo;
use super::cache::CacheState;
use super::capability::declared::Capabilities;
use super::capability::events::EventsCapability;
use super::capability::log::LogCapability;
use super::capability::sandbox::{SandboxCapability, StartPace};
use super::deadline::{Interrupted, bounded};
use super::describe::describe;
use super::failure::{check_result_size, classify, refuse_host_only_kind};
use super::guest::{BackendGuest, BackendGuestPre};
use super::limits::PluginLimits;
use super::state::{BackendWorld, SessionState, limited_store};
use super::text::cut;
use super::{PluginHost, PluginIdentity};
use crate::redact::Redactor;
use aac_protocol::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};
use aac_sandbox::{ProcessLimits, Sandbox};

/// A loaded backend adapter: compiled, linked and described. Sessions are cheap to open.
pub struct BackendPlugin {
    host: Arc<PluginHost>,
    pre: BackendGuestPre,
    /// The contract the plugin was built for (0.1.0 ones run through the adapter).
    contract: ContractVersion,
    identity: Arc<PluginIdentity>,
    description: String,
    cache: CacheState,
    limits: PluginLimits,
    declared: Capabilities,
    /// Declared ∧ granted; nothing until [`Self::with_grants`].
    effective: Capabilities,
}

/// What a session needs from its caller.
pub struct SessionOptions {
    pub run: wit::RunInfo,
    /// Where the plugin's processes run; `None` for a session that may not start any.
    pub sandbox: Option<Arc<dyn Sandbox>>,
    pub events: mpsc::UnboundedSender<TurnEvent>,
    pub process_limits: ProcessLimits,
    /// How long a cancelled turn may take to return before the host stops waiting for it.
    pub cancel_grace: Duration,
    /// Secret values to mask in the session's events and logs.
    pub redactor: Redactor,
    /// Cancelling it ends a `start` still running (run cancelled, lease lost, shutdown).
    pub cancel: CancellationToken,
}

impl BackendPlugin {
    pub(super) async fn new(
        host: Arc<PluginHost>,
        path: &Path,
        contract: ContractVersion,
        component: Component,
        cache: CacheState,
        declared: Capabilities,
    ) -> Result<Self> {
        let file_name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        let identity = PluginIdentity {
            name: file_name,
            version: "unknown".into(),
            path: path.to_path_buf(),
        };
        let linkers = (&host.backend_linker, &host.backend_linker_v0_1);
        let pre =
            BackendGuestPre::new(contract, linkers, &component).map_err(
                |(step, err)| match step {
                    "link" => {
                        anyhow::anyhow!("{identity} cannot be linked against this host: {err}")
                    }
                    _ => anyhow::anyhow!("{identity} does not export the backend world: {err}"),
                },
            )?;

        let mut plugin = Self {
            limits: host.limits,
            host,
            pre,
            contract,
            identity: Arc::new(identity.clone()),
            description: String::new(),
            cache,
            declared,
            effective: Capabilities::default(),
        };
        let (events, _) = mpsc::unbounded_channel();
        let store = plugin.new_store(SessionOptions {
            run: wit::RunInfo {
                run_id: "describe".into(),
                runtime: String::new(),
                workspace_dir: String::new(),
                config_json: "{}".into(),
            },
            sandbox: None,
            events,
            process_limits: ProcessLimits::default(),
            cancel_grace: Duration::ZERO,
            redactor: Redactor::default(),
            cancel: CancellationToken::new(),
        });
        let pre = plugin.pre.clone();
        // Boxed: the loading future is nested deep in its callers' futures already.
        let info = Box::pin(describe(
            &mut plugin.identity,
            store,
            move |store| {
                Box::pin(async move {
                    let guest = pre.instantiate(&mut *store).await?;
                    guest.describe(store).await
                })
            },
            |info: &PluginInfo| [&info.name, &info.version, &info.description].map(String::as_str),
        ))
        .await?;
        plugin.description = info.description;
        Ok(plugin)
    }

    pub fn identity(&self) -> &Arc<PluginIdentity> {
        &self.identity
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The contract version the plugin was built for.
    pub fn contract(&self) -> ContractVersion {
        self.contract
    }

    /// Whether loading found the compiled artifact in the cache.
    pub fn cache_state(&self) -> CacheState {
        self.cache
    }

    /// Runs this plugin's sessions under other limits than the host's defaults (a runtime's
    /// `limits`). Memory cannot go above the host's: the engine reserved that much per session.
    pub fn with_limits(mut self, limits: PluginLimits) -> Self {
        self.limits = PluginLimits {
            memory_bytes: limits.memory_bytes.min(self.host.limits.memory_bytes),
            ..limits
        };
        self
    }

    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Gives this plugin's sessions what it declares and `grants` allows (a runtime's `grants`):
    /// those host environment variables, and wasi:http to those hosts. Without this call a
    /// session gets nothing.
    pub fn with_grants(mut self, grants: &Capabilities) -> Self {
        self.effective = Capabilities::effective(&self.declared, grants);
        self
    }

    /// What the plugin declares it needs (its `aac:capabilities` section).
    pub fn declared(&self) -> &Capabilities {
        &self.declared
    }

    /// What its sessions get: declared ∧ granted.
    pub fn effective(&self) -> &Capabilities {
        &self.effective
    }

    fn new_store(&self, options: SessionOptions) -> Store<SessionState<BackendWorld>> {
        let limits = self.limits;
        let state = SessionState::new(
            self.identity.clone(),
            &limits,
            self.host.paced.clone(),
            LogCapability::new(
                options.run.run_id.clone(),
                16 << 10,
                options.redactor.clone(),
            ),
            BackendWorld {
                events: EventsCapability::with_limits(
                    options.events,
                    options.redactor,
                    (&limits).into(),
                ),
                sandbox: SandboxCapability::new(
                    options.sandbox,
                    options.process_limits,
                    StartPace::new(
                        limits.process_starts_per_second,
                        limits.process_start_burst,
                        self.host.paced_starts.clone(),
                    ),
                ),
            },
        );
        let mut state = state;
        if !self.effective.is_empty() {
            state.grant(&self.effective);
        }
        limited_store(self.host.engine(), state)
    }

    /// Instantiates the plugin in a fresh Store and opens the run's session.
    pub async fn open_session(
        &self,
        options: SessionOptions,
    ) -> Result<BackendSession, TurnOutcome> {
        let run = options.run.clone();
        let cancel_grace = options.cancel_grace;
        let cancel = options.cancel.clone();
        let span = info_span!("session", plugin = %self.identity.name, run = %run.run_id);
        let mut store = self.new_store(options);
        store.data_mut().start_call();
        // Boxed: the guest's versioned calls would make this future too deep for its callers'.
        let opening = Box::pin(async {
            let bindings = self.pre.instantiate(&mut store).await?;
            let started = bindings.start(&mut store, &run).await?;
            Ok::<_, wasmtime::Error>((bindings, started))
        })
        .instrument(span.clone());
        let opened = bounded(opening, self.limits.call_wall, &cancel)
            .await
            .map_err(|stopped| stopped.outcome(&self.identity, "start", "[limits] call_wall"))?;
        match opened {
            Ok((bindings, Ok(session))) => Ok(BackendSession {
                store,
                bindings,
                session,
                identity: self.identity.clone(),
                broken: None,
                cancel_grace,
                limits: self.limits,
                span,
            }),
            // The plugin's own words, bounded like every string it returns.
            Ok((_, Err(mut refused))) => {
                refused.message = cut(&refused.message, self.limits.result_bytes).into_owned();
                Err(refused.outcome(&self.identity))
            }
            Err(err) => Err(classify(store.data(), "start", &err)),
        }
    }
}

/// One run's session: a Store, an instance and the plugin's `session` resource.
pub struct BackendSession {
    store: Store<SessionState<BackendWorld>>,
    bindings: BackendGuest,
    session: ResourceAny,
    identity: Arc<PluginIdentity>,
    /// Set once the plugin trapped or was abandoned: the instance must not be entered again.
    broken: Option<TurnOutcome>,
    cancel_grace: Duration,
    limits: PluginLimits,
    span: tracing::Span,
}

impl BackendSession {
    pub fn identity(&self) -> &Arc<PluginIdentity> {
        &self.identity
    }

    /// Emits an event of the host's own (e.g. `result.truncated`) in the current command's
    /// sequence, as if emitted by the turn that just ended.
    pub fn push_host_event(&mut self, kind: &str, payload: serde_json::Value) {
        self.store.data_mut().world.events.push(kind, payload);
    }

    /// Adds the host's own events to this session's numbered events (the egress proxy's verdicts).
    pub fn host_events(&self) -> super::capability::events::HostEvents {
        self.store.data().world.events.host_events()
    }

    /// Well-known events of this session whose payload broke the registry's schema. Counted in
    /// debug and test builds only (each is also logged as a warning); always 0 in release builds.
    pub fn schema_violations(&self) -> u64 {
        self.store.data().world.events.schema_violations
    }

    /// Numbers the session's next event after `seq` (the run's last stored event).
    pub fn continue_events_after(&mut self, seq: u64) {
        self.store.data_mut().world.events.continue_after(seq);
    }

    /// Runs one turn. Cancelling `cancel` kills the turn's processes; the turn is reported as
    /// cancelled even if the plugin ignores it, once `cancel_grace` has passed.
    pub async fn run_turn(
        &mut self,
        command: wit::CommandInfo,
        cancel: CancellationToken,
    ) -> TurnOutcome {
        if let Some(outcome) = &self.broken {
            return outcome.clone();
        }
        // A child of the caller's span (the runner's turn), following from the session's start.
        let span = info_span!("turn", plugin = %self.identity.name, command = %command.command_id);
        span.follows_from(&self.span);
        // Stops the turn's processes on a cancel and at the wall-clock deadline alike.
        let stop_processes = cancel.child_token();
        let state = self.store.data_mut();
        state.world.sandbox.cancel = stop_processes.clone();
        state.world.sandbox.lost = None;
        state.world.events.set_command(&command.command_id);
        state.start_turn();
        state.world.events.start_turn();

        let grace = self.cancel_grace;
        let wall = self.limits.turn_wall;
        let call = Box::pin(
            self.bindings
                .run_turn(&mut self.store, self.session, &command),
        );
        // Cancelled or past its deadline, the turn's processes are killed at once; the plugin
        // then has `grace` to return before it is abandoned.
        let stopped = async {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(wall) => {}
            }
            stop_processes.cancel();
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            result = call.instrument(span) => Some(result),
            () = stopped => None,
        };
        // The processes were stopped though nobody cancelled: the deadline passed.
        let past_deadline = stop_processes.is_cancelled() && !cancel.is_cancelled();
        self.store.data_mut().world.events.end_turn();
        tracing::debug!(cpu = ?self.store.data().cpu.used(), "the plugin's CPU in this turn");

        let outcome = match result {
            // Past its deadline the turn failed, whatever the plugin said once its processes died.
            _ if past_deadline => {
                let outcome = Interrupted::Deadline(wall).outcome(
                    &self.identity,
                    "run-turn",
                    "[limits] turn_wall",
                );
                self.broken = Some(outcome.clone());
                outcome
            }
            Some(Ok(result)) => match check_result_size(
                self.store.data(),
                "run-turn",
                [&result.message, &result.thread_id, &result.turn_id]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            ) {
                Ok(()) => refuse_host_only_kind(&self.identity, from_wit(result)),
                Err(outcome) => {
                    self.broken = Some(outcome.clone());
                    outcome
                }
            },
            Some(Err(err)) => {
                let outcome = classify(self.store.data(), "run-turn", &err);
                self.store.data_mut().world.events.push(
                    "backend.failed",
                    serde_json::json!({ "failure_kind": outcome.failure_kind, "message": outcome.message }),
                );
                self.broken = Some(outcome.clone());
                outcome
            }
            None => {
                let outcome = TurnOutcome::cancelled(format!(
                    "{} did not return within {grace:?} of the cancellation; the turn was abandoned",
                    self.identity
                ));
                self.broken = Some(outcome.clone());
                outcome
            }
        };
        if let Some(lost) = self.store.data_mut().world.sandbox.lost.take()
            && !cancel.is_cancelled()
            && outcome.status != TerminalStatus::Completed
        {
            return TurnOutcome::failed(
                FailureKind::SandboxLost,
                format!("the sandbox was lost during the turn: {lost}"),
            );
        }
        if cancel.is_cancelled() && outcome.status != TerminalStatus::Cancelled {
            // The host decides: a cancelled turn is reported as cancelled, whatever the plugin said.
            return TurnOutcome {
                status: TerminalStatus::Cancelled,
                failure_kind: None,
                message: Some(outcome.message.unwrap_or_else(|| "cancelled".into())),
                ..outcome
            };
        }
        outcome
    }

    /// Lets the plugin close the session, then drops it. Errors are logged, never fatal. The
    /// call is bounded by `[limits] call_wall`.
    pub async fn close(self) {
        self.close_within(Duration::MAX, &CancellationToken::new())
            .await;
    }

    /// [`Self::close`], abandoned once `wall` (at most `[limits] call_wall`) has passed or `stop`
    /// fires: a session being torn down after a cancel or a shutdown waits no longer than that.
    pub async fn close_within(mut self, wall: Duration, stop: &CancellationToken) {
        if self.broken.is_some() {
            return;
        }
        self.store.data_mut().start_call();
        let closing = Box::pin(async {
            self.bindings.close(&mut self.store, self.session).await?;
            self.session.resource_drop_async(&mut self.store).await
        });
        let closed = bounded(closing, wall.min(self.limits.call_wall), stop).await;
        match closed {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                let outcome = classify(self.store.data(), "close", &err);
                warn!(plugin = %self.identity, message = ?outcome.message, "closing the session failed");
            }
            Err(stopped) => {
                let outcome = stopped.outcome(&self.identity, "close", "[limits] call_wall");
                warn!(plugin = %self.identity, message = ?outcome.message, "the session was not closed");
            }
        }
    }
}

fn from_wit(result: wit::TurnResult) -> TurnOutcome {
    TurnOutcome {
        status: match result.status {
            wit::TerminalStatus::Completed => TerminalStatus::Completed,
            wit::TerminalStatus::Failed => TerminalStatus::Failed,
            wit::TerminalStatus::Blocked => TerminalStatus::Blocked,
            wit::TerminalStatus::Cancelled => TerminalStatus::Cancelled,
        },
        failure_kind: result.failure_kind.map(failure_kind_from_wit),
        message: result.message,
        thread_id: result.thread_id,
        turn_id: result.turn_id,
    }
}

fn failure_kind_from_wit(kind: wit::FailureKind) -> FailureKind {
    use wit::FailureKind as W;
    match kind {
        W::AgentError => FailureKind::AgentError,
        W::ModelError => FailureKind::ModelError,
        W::AuthError => FailureKind::AuthError,
        W::TurnTimeout => FailureKind::TurnTimeout,
        W::BackendCrashed => FailureKind::BackendCrashed,
        W::BackendTimeout => FailureKind::BackendTimeout,
        W::ResourceExhausted => FailureKind::ResourceExhausted,
        W::OomKilled => FailureKind::OomKilled,
        W::SandboxLost => FailureKind::SandboxLost,
        W::ImageUnavailable => FailureKind::ImageUnavailable,
        W::ResourceBundle => FailureKind::ResourceBundle,
        W::LeaseLost => FailureKind::LeaseLost,
        W::SchemaInvalid => FailureKind::SchemaInvalid,
        W::HostError => FailureKind::HostError,
        W::ConfigInvalid => FailureKind::ConfigInvalid,
    }
}
