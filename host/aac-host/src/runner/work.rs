//! The life of one claimed run: the command loop, each turn, and the terminal status.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::cancel_watch::CancelWatch;
use super::events::EventShipper;
use super::lease::{LeaseBudget, LeaseKeeper, Observers};
use super::metrics::EventTap;
use super::profile::RunProfile;
use super::run_end::{RunEnd, ends_the_run, guarded};
use super::session::{BundleJob, RunSession, SandboxSource, SessionRequest};
use super::signals::RunSignals;
use super::status::{HeldRun, now_ms};
use super::stop::{StopReason, stop_reason, stopped_outcome};
use super::{RunMode, RunReport, Runner, StartError};
use crate::manager::RetryPolicy;
use crate::manager::protocol::{Command, Lease, Run};
use crate::outcome::{FailureKind, TurnEvent, TurnOutcome};
use crate::plugin::materializer::MaterializeOptions;

/// How long a runner that gives its run back spends on the last events and the release, so a
/// runner with an unreachable manager still exits promptly.
pub(super) const RELEASE_BUDGET: Duration = Duration::from_secs(5);

pub(super) struct RunWork<'a> {
    pub(super) runner: &'a Runner,
    pub(super) run: Run,
    pub(super) token: String,
    pub(super) signals: Arc<RunSignals>,
    pub(super) events: mpsc::UnboundedSender<TurnEvent>,
    pub(super) shipper: EventShipper,
    pub(super) session: Option<RunSession>,
    /// When the session must end at the latest (its maximum duration).
    session_deadline: Option<Instant>,
    /// Shows the run's events to the runner's metrics (first event of a turn, token usage).
    tap: Arc<EventTap>,
    /// The attempt this claim opened (its number counts from 1).
    pub(super) attempt: u32,
    budget: LeaseBudget,
    pub(super) report: RunReport,
    /// What each command changed, captured against the workspace's last recorded state.
    pub(super) results: super::work_results::ResultState,
}

impl Runner {
    /// Works on a claimed run until it ends. `claimed_at` is when the claim was sent: the lease
    /// runs from no earlier.
    pub(super) async fn work(
        &self,
        lease: Lease,
        claimed_at: Instant,
    ) -> Result<RunReport, StartError> {
        let Lease {
            run,
            lease_token,
            attempt_id,
            attempt,
            lease_ms,
            ..
        } = lease;
        // The manager may grant less than was asked for: budget the lease it granted.
        let granted = match lease_ms {
            0 => self.config.lease,
            ms => Duration::from_millis(ms).min(self.config.lease),
        };
        let budget = LeaseBudget::new(granted);
        // Traces: claim → attempt, in the trace the run was created or first enqueued under.
        let claim = info_span!("claim", run = %run.id, attempt = %attempt_id, lease_ms = granted.as_millis() as u64);
        crate::telemetry::propagation::join(&claim, run.trace_context.as_ref());
        let span = info_span!(parent: &claim, "run", otel.name = "attempt", run = %run.id, attempt = %attempt_id, attempt_number = attempt, backend = %run.backend);
        async move {
            // Heartbeats start at once and go on without waiting for each other; one must succeed
            // before any work (a runner that cannot renew must not start).
            let signals = Arc::new(RunSignals::default());
            let _held = self.status.hold(HeldRun {
                run_id: run.id.clone(),
                attempt_id: attempt_id.clone(),
                backend: run.backend.clone(),
                since_ms: now_ms(),
            });
            let keeper = LeaseKeeper::start(
                &self.client,
                run.id.clone(),
                lease_token.clone(),
                budget,
                claimed_at,
                signals.clone(),
                Observers {
                    status: self.status.clone(),
                    metrics: self.metrics.clone(),
                },
            );
            let renewed = tokio::select! {
                () = keeper.renewed_once() => true,
                () = signals.lease_lost().cancelled() => false,
            };
            // The claim ends with the lease confirmed by the first heartbeat (or lost).
            drop(claim);
            if !renewed {
                keeper.stop().await;
                // Give the attempt back at once rather than let it wait out its lease.
                let _ = self
                    .client
                    .clone()
                    .with_request_timeout(RELEASE_BUDGET)
                    .with_retry(RetryPolicy::none())
                    .release(&run.id, &lease_token, "the first heartbeat failed")
                    .await;
                return Err(StartError::FirstHeartbeat {
                    run: run.id.clone(),
                    reason: signals.lost_reason().unwrap_or_default(),
                });
            }
            let watch = CancelWatch::start(&self.client, run.id.clone(), signals.clone());
            let tap = Arc::new(EventTap::new(self.metrics.clone()));
            let (events, shipper) = EventShipper::start_tapped(
                &self.client,
                run.id.clone(),
                lease_token.clone(),
                self.config.batch,
                Some(tap.clone()),
            );
            let backend = run.backend.clone();
            info!("claimed; working on the run");
            let work = RunWork {
                runner: self,
                report: RunReport {
                    run_id: run.id.clone(),
                    outcome: TurnOutcome::completed(),
                    commands: Vec::new(),
                    events: Default::default(),
                    reported: false,
                    workspace: None,
                    warm_sandbox: false,
                    attempt_id,
                    released: None,
                    results: Vec::new(),
                },
                run,
                token: lease_token,
                signals,
                events,
                shipper,
                session: None,
                session_deadline: None,
                tap,
                attempt,
                budget,
                results: Default::default(),
            };
            let report = work.finish_run().await;
            let how = match &report.released {
                Some(_) => "released".to_owned(),
                None => report.status().to_string(),
            };
            self.metrics
                .attempt_ended(&backend, &how, report.events.sent, report.events.dropped);
            drop(watch);
            keeper.stop().await;
            Ok(report)
        }
        .instrument(span)
        .await
    }
}

impl RunWork<'_> {
    /// Why the run must stop now, if it must.
    fn interrupted(&self) -> Option<RunEnd> {
        if self.signals.lease_lost().is_cancelled() {
            let reason = self.signals.lost_reason().unwrap_or_default();
            return Some(RunEnd::LeaseLost(reason));
        }
        if self.signals.run_cancelled().is_cancelled() {
            return Some(RunEnd::Cancelled("the run was cancelled".into()));
        }
        if self.runner.shutdown.aborting().is_cancelled() {
            return Some(RunEnd::ShutDown);
        }
        if self.runner.shutdown.draining().is_cancelled() {
            return Some(RunEnd::Drained);
        }
        None
    }

    pub(super) async fn command_loop(&mut self) -> RunEnd {
        let profile = match self.runner.profiles.resolve(&self.run.backend) {
            Ok(profile) => profile,
            Err(err) => return RunEnd::Failed(FailureKind::HostError, format!("{err:#}")),
        };
        let config = &self.runner.config;
        let idle = config.idle_timeout.unwrap_or(profile.idle_timeout);
        let mut idle_deadline = Instant::now() + idle;
        let mut cursor = 0;
        loop {
            if let Some(end) = self.interrupted() {
                return end;
            }
            let wait = match config.mode {
                RunMode::OneShot => Duration::ZERO,
                RunMode::UntilIdle => idle_deadline
                    .saturating_duration_since(Instant::now())
                    .min(config.poll_wait),
            };
            let poll = self.runner.client.poll_commands(&self.run.id, cursor, wait);
            let batch = tokio::select! {
                batch = poll => batch,
                () = self.signals.run_cancelled().cancelled() => continue,
                () = self.signals.lease_lost().cancelled() => continue,
                () = self.runner.shutdown.draining().cancelled() => continue,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => return RunEnd::from_client_error(err),
            };
            if batch.run_status.is_terminal() {
                return RunEnd::AlreadyEnded(batch.run_status);
            }
            if batch.cancel_requested {
                return RunEnd::Cancelled("the run was cancelled".into());
            }
            if batch.commands.is_empty() {
                if config.mode == RunMode::OneShot {
                    return RunEnd::Finished("every queued command ran");
                }
                if Instant::now() >= idle_deadline {
                    return RunEnd::Finished("no command arrived within the idle timeout");
                }
                continue;
            }
            for command in batch.commands {
                cursor = command.seq;
                if command.status.is_terminal() {
                    continue;
                }
                if let Some(end) = self.interrupted() {
                    return end;
                }
                if let Some(end) = self.run_command(&profile, command).await {
                    return end;
                }
                idle_deadline = Instant::now() + idle;
            }
        }
    }

    /// Ack, turn, flush, status. `Some` when the run must end.
    async fn run_command(&mut self, profile: &RunProfile, command: Command) -> Option<RunEnd> {
        let span = info_span!("command", command = %command.id, seq = command.seq);
        // A command sent under another trace than the run's joins it, linked to this attempt.
        crate::telemetry::propagation::join_or_link(
            &span,
            command.trace_context.as_ref(),
            &tracing::Span::current(),
        );
        async {
            let client = &self.runner.client;
            let acked = guarded(
                &self.signals,
                &self.runner.shutdown,
                client.ack(&self.run.id, &command.id, &self.token),
            )
            .await;
            let command = match acked {
                Ok(Ok(command)) if command.status.is_terminal() => return None,
                Ok(Ok(command)) => command,
                Ok(Err(err)) => return Some(RunEnd::from_client_error(err)),
                Err(end) => return Some(end),
            };
            debug!("acked; the turn starts");
            let agent = super::traces::invoke_agent_span(&profile.runtime);
            self.tap.turn_started(&profile.runtime, &command.id, &agent);
            let turn_started = std::time::Instant::now();
            let outcome = match self.turn(profile, &command).instrument(agent.clone()).await {
                Ok(outcome) => {
                    self.runner.metrics.turn_ended(
                        &profile.runtime,
                        &outcome.status.to_string(),
                        turn_started,
                    );
                    outcome
                }
                // Stopped by the host, not by the user: no status; the next attempt re-runs it
                // when it can (see the manager's rules on lost attempts).
                Err(end) => {
                    info!(reason = ?end, "turn stopped; the command goes back with the run");
                    return Some(end);
                }
            };
            info!(status = %outcome.status, failure_kind = ?outcome.failure_kind, "turn ended");
            // The result is stored before the events are flushed and the status reported.
            if let Err(end) = self.store_result(&command).await {
                return Some(end);
            }
            match guarded(&self.signals, &self.runner.shutdown, self.shipper.flush()).await {
                Ok(Ok(_)) => debug!("the turn's events delivered"),
                Ok(Err(err)) => {
                    warn!(error = %err, "events of the turn were not all delivered");
                    if err.fatal {
                        return Some(RunEnd::LeaseLost(err.message));
                    }
                }
                Err(end) => return Some(end),
            }
            // Every event of the turn went through the tap: its token usage is known, and its
            // tool calls still open end with it.
            super::traces::record_turn(&agent, self.tap.turn_ended());
            drop(agent);
            let reported = guarded(
                &self.signals,
                &self.runner.shutdown,
                client.command_status(&self.run.id, &command.id, &self.token, &outcome),
            )
            .await;
            self.report
                .commands
                .push((command.id.clone(), outcome.clone()));
            match reported {
                Ok(Ok(_)) => debug!("status reported"),
                Ok(Err(err)) => return Some(RunEnd::from_client_error(err)),
                Err(end) => return Some(end),
            }
            match outcome.failure_kind {
                Some(FailureKind::LeaseLost) => {
                    Some(RunEnd::LeaseLost(outcome.message.unwrap_or_default()))
                }
                Some(kind) if ends_the_run(kind) => {
                    Some(RunEnd::Failed(kind, outcome.message.unwrap_or_default()))
                }
                _ => None,
            }
        }
        .instrument(span)
        .await
    }

    /// One turn, opening the session first if this is the run's first command. `Err` when the
    /// host stopped it: the lease was lost or the runner shut down.
    async fn turn(
        &mut self,
        profile: &RunProfile,
        command: &Command,
    ) -> Result<TurnOutcome, RunEnd> {
        if self.session.is_none() {
            // Opening (materializing, the plugin's `start`) stops as a turn does.
            let cancel = CancellationToken::new();
            let signals = self.signals.clone();
            let runner = self.runner;
            let stop = stop_reason(&signals, runner, &command.id, None);
            let (opened, stopped) = {
                let open = self.open_session(profile, cancel.clone());
                tokio::pin!(open);
                tokio::select! {
                    opened = &mut open => (opened, None),
                    reason = stop => {
                        cancel.cancel();
                        (open.await, Some(reason))
                    }
                }
            };
            let opened = match (opened, stopped) {
                // Lost or shut down while opening: the run goes back, as from a turn.
                (Err(_), Some(StopReason::LeaseLost)) => {
                    return Err(RunEnd::LeaseLost(format!(
                        "opening the session was stopped: {}",
                        signals.lost_reason().unwrap_or_default()
                    )));
                }
                (Err(_), Some(StopReason::ShutDown)) => return Err(RunEnd::ShutDown),
                (Err(outcome), Some(reason)) => {
                    Err(stopped_outcome(reason, outcome, &signals, profile))
                }
                (opened, _) => opened,
            };
            match opened {
                Ok(session) => {
                    self.report.workspace = Some(session.workspace.clone());
                    self.report.warm_sandbox = session.warm;
                    let user =
                        super::session::sandbox_spec(profile, session.workspace.clone()).user;
                    let restored = self.start_results(&session.workspace, &user).await;
                    self.runner.metrics.sandbox_started(session.warm);
                    self.session = Some(session);
                    if let Err(outcome) = restored {
                        return Ok(outcome);
                    }
                    self.session_deadline = Some(Instant::now() + profile.max_duration);
                }
                Err(outcome) => return Ok(outcome),
            }
        }
        let session = self.session.as_mut().expect("opened above");
        let deadline = self.session_deadline.expect("set with the session");
        let signals = &self.signals;
        let stop = stop_reason(signals, self.runner, &command.id, Some(deadline));
        let cancel = CancellationToken::new();
        let turn = session.run_turn(command, cancel.clone());
        tokio::pin!(turn);
        let (outcome, stopped) = tokio::select! {
            outcome = &mut turn => (outcome, None),
            reason = stop => {
                cancel.cancel();
                (turn.await, Some(reason))
            }
        };
        match stopped {
            Some(StopReason::LeaseLost) => Err(RunEnd::LeaseLost(format!(
                "the turn was stopped: {}",
                signals.lost_reason().unwrap_or_default()
            ))),
            Some(StopReason::ShutDown) => Err(RunEnd::ShutDown),
            Some(reason) => Ok(stopped_outcome(reason, outcome, signals, profile)),
            None => Ok(outcome),
        }
    }

    async fn open_session(
        &mut self,
        profile: &RunProfile,
        cancel: CancellationToken,
    ) -> Result<RunSession, TurnOutcome> {
        let runner = self.runner;
        let plugin = runner
            .plugin(profile)
            .await
            .map_err(|err| TurnOutcome::failed(FailureKind::HostError, format!("{err:#}")))?;
        let materializer = match &self.run.bundle {
            None => None,
            Some(_) => match runner.materializer().await {
                Ok(Some(found)) => Some(found),
                Ok(None) => {
                    return Err(TurnOutcome::failed(
                        FailureKind::ResourceBundle,
                        "the run carries a resource bundle, but this runner has no `[bundles]` \
                         materializer configured",
                    ));
                }
                Err(err) => {
                    return Err(TurnOutcome::failed(
                        FailureKind::ResourceBundle,
                        format!("could not load the bundle materializer: {err:#}"),
                    ));
                }
            },
        };
        // A bundle in the manager's blob store is downloaded into a local archive, which the
        // materializer reads as it arrives.
        let fetching = match (&self.run.bundle, &materializer) {
            (Some(bundle), Some((_, settings))) => super::work_results::fetch_bundle(
                runner,
                self.attempt_dir(),
                bundle,
                &settings.limits,
            )?,
            _ => None,
        };
        let bundle = match (&self.run.bundle, &materializer) {
            (Some(bundle), Some((plugin, settings))) => Some(BundleJob {
                materializer: plugin,
                bundle: fetching.as_ref().map_or(bundle, |f| &f.bundle),
                options: MaterializeOptions {
                    arriving: fetching.as_ref().map(|f| f.arrival.clone()),
                    ..settings.options()
                },
            }),
            _ => None,
        };
        let pool = runner.pool_for(profile).await;
        let source = match &pool {
            Some(pool) => SandboxSource::Pool(pool),
            None => SandboxSource::Cold {
                driver: runner.driver.as_ref(),
                workspace: runner.config.workspace.clone().unwrap_or_else(|| {
                    // A later attempt starts from a fresh workspace of its own: the lost one's
                    // half-done changes are not the state its command started from.
                    let run_dir = runner.config.workspace_root.join(&self.run.id);
                    match self.attempt {
                        0 | 1 => run_dir.join("workspace"),
                        n => run_dir.join(format!("attempt-{n}")).join("workspace"),
                    }
                }),
            },
        };
        let request = SessionRequest {
            run: &self.run,
            bundle,
            events: self.events.clone(),
            last_event_seq: self.run.last_event_seq,
            cancel_grace: runner.config.cancel_grace,
            kill_grace: self.budget.kill_grace,
            cancel,
        };
        RunSession::open(&plugin, profile, source, request).await
    }
}
