//! The life of one claimed run: the command loop, each turn, and the terminal status.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::cancel_watch::CancelWatch;
use super::events::EventShipper;
use super::lease::LeaseKeeper;
use super::profile::RunProfile;
use super::session::{BundleJob, RunSession, SandboxSource, SessionRequest};
use super::signals::RunSignals;
use super::{RunMode, RunReport, Runner, StartError};
use crate::manager::protocol::{Cancellation, Command, Lease, Run, RunStatus, RunStatusUpdate};
use crate::manager::{ClientError, RetryPolicy};
use crate::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};

/// Why the command loop stopped.
#[derive(Debug)]
enum RunEnd {
    /// Commands done (one-shot), idle timeout, or drained: the run ends as its last turn did.
    Finished(&'static str),
    Cancelled(String),
    Failed(FailureKind, String),
    LeaseLost(String),
    /// Somebody else ended the run.
    AlreadyEnded(RunStatus),
}

impl RunEnd {
    fn from_client_error(err: ClientError) -> Self {
        if err.is_lease_lost() {
            RunEnd::LeaseLost(err.to_string())
        } else if let ClientError::Status { code, .. } = &err
            && code == crate::manager::protocol::error_code::RUN_TERMINAL
        {
            RunEnd::AlreadyEnded(RunStatus::Cancelled)
        } else {
            RunEnd::Failed(err.failure_kind(), err.to_string())
        }
    }
}

/// Failure kinds after which the run's session cannot go on.
fn ends_the_run(kind: FailureKind) -> bool {
    !matches!(
        kind,
        FailureKind::AgentError
            | FailureKind::ModelError
            | FailureKind::AuthError
            | FailureKind::TurnTimeout
            | FailureKind::OomKilled
    )
}

/// Why a running turn was stopped by the host.
enum StopReason {
    Cancelled(&'static str),
    LeaseLost,
    MaxDuration,
}

struct RunWork<'a> {
    runner: &'a Runner,
    run: Run,
    token: String,
    signals: Arc<RunSignals>,
    events: mpsc::UnboundedSender<TurnEvent>,
    shipper: EventShipper,
    session: Option<RunSession>,
    /// When the session must end at the latest (its maximum duration).
    session_deadline: Option<Instant>,
    report: RunReport,
}

impl Runner {
    /// Works on a claimed run until it ends.
    pub(super) async fn work(&self, lease: Lease) -> Result<RunReport, StartError> {
        let Lease {
            run, lease_token, ..
        } = lease;
        let span = info_span!("run", run = %run.id, backend = %run.backend);
        async move {
            // One successful heartbeat before any work (a runner that cannot renew must not start).
            let sent_at = Instant::now();
            let first = self
                .client
                .clone()
                .with_retry(RetryPolicy {
                    deadline: self.config.lease / 2,
                    ..RetryPolicy::default()
                })
                .heartbeat(&run.id, &lease_token, None)
                .await
                .map_err(|source| StartError::FirstHeartbeat {
                    run: run.id.clone(),
                    source,
                })?;
            let signals = Arc::new(RunSignals::default());
            signals.apply(&Cancellation {
                run_status: first.run_status,
                cancel_run: first.cancel_run,
                cancel_commands: first.cancel_commands,
            });
            let keeper = LeaseKeeper::start(
                &self.client,
                run.id.clone(),
                lease_token.clone(),
                self.config.lease,
                sent_at,
                signals.clone(),
            );
            let watch = CancelWatch::start(&self.client, run.id.clone(), signals.clone());
            let (events, shipper) = EventShipper::start(
                &self.client,
                run.id.clone(),
                lease_token.clone(),
                self.config.batch,
            );
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
                },
                run,
                token: lease_token,
                signals,
                events,
                shipper,
                session: None,
                session_deadline: None,
            };
            let report = work.finish_run().await;
            drop(watch);
            keeper.stop().await;
            Ok(report)
        }
        .instrument(span)
        .await
    }
}

impl RunWork<'_> {
    /// Runs the command loop, closes the session, flushes the events and reports the status.
    async fn finish_run(mut self) -> RunReport {
        let end = self.command_loop().await;
        if let Some(session) = self.session.take() {
            // A run stopped by the host closes quickly: its plugin had its turn's grace already.
            let wall = match end {
                RunEnd::Cancelled(_) | RunEnd::LeaseLost(_) => self.runner.config.cancel_grace,
                _ => Duration::MAX,
            };
            session.close(wall, self.runner.shutdown.aborting()).await;
        }
        let lease_lost = matches!(end, RunEnd::LeaseLost(_));
        let outcome = self.final_outcome(end);
        info!(status = %outcome.status, failure_kind = ?outcome.failure_kind, "run ended");

        let RunWork {
            runner,
            run,
            token,
            events,
            shipper,
            mut report,
            ..
        } = self;
        drop(events);
        if let Err(err) = shipper.flush().await {
            warn!(error = %err, "not every event reached the manager");
        }
        report.events = shipper.finish().await;
        report.outcome = outcome.clone();
        let update = RunStatusUpdate {
            status: outcome.status,
            failure_kind: outcome.failure_kind,
            message: outcome.message.clone(),
        };
        // A runner that lost its lease tries once to say so; otherwise the status is retried
        // (heartbeats go on meanwhile) until the manager accepts it.
        let client = if lease_lost {
            runner.client.clone().with_retry(RetryPolicy::none())
        } else {
            runner.client.clone()
        };
        match client.run_status(&run.id, &token, &update).await {
            Ok(_) => report.reported = true,
            Err(err) if err.status() == Some(409) => {
                info!(error = %err, "the manager did not take the run status: the run is no longer ours")
            }
            Err(err) => warn!(error = %err, "could not report the run status"),
        }
        report
    }

    /// The terminal status to report for how the loop ended.
    fn final_outcome(&self, end: RunEnd) -> TurnOutcome {
        match end {
            RunEnd::Finished(why) => match self.report.commands.last() {
                Some((_, last)) => TurnOutcome {
                    thread_id: None,
                    turn_id: None,
                    ..last.clone()
                },
                None => TurnOutcome {
                    message: Some(format!("{why}; no command ran")),
                    ..TurnOutcome::completed()
                },
            },
            RunEnd::Cancelled(message) => TurnOutcome::cancelled(message),
            RunEnd::Failed(kind, message) => TurnOutcome::failed(kind, message),
            RunEnd::LeaseLost(message) => TurnOutcome::failed(FailureKind::LeaseLost, message),
            RunEnd::AlreadyEnded(status) => TurnOutcome {
                message: Some(format!("the run was ended elsewhere ({status})")),
                ..TurnOutcome::cancelled("")
            },
        }
    }

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
            return Some(RunEnd::Cancelled("the runner was shut down".into()));
        }
        if self.runner.shutdown.draining().is_cancelled() {
            return Some(RunEnd::Finished("the runner drained"));
        }
        None
    }

    async fn command_loop(&mut self) -> RunEnd {
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
        async {
            let client = &self.runner.client;
            let command = match client.ack(&self.run.id, &command.id, &self.token).await {
                Ok(command) if command.status.is_terminal() => return None,
                Ok(command) => command,
                Err(err) => return Some(RunEnd::from_client_error(err)),
            };
            let outcome = self.turn(profile, &command).await;
            info!(status = %outcome.status, failure_kind = ?outcome.failure_kind, "turn ended");
            if let Err(err) = self.shipper.flush().await {
                warn!(error = %err, "events of the turn were not all delivered");
                if err.fatal {
                    return Some(RunEnd::LeaseLost(err.message));
                }
            }
            let reported = client
                .command_status(&self.run.id, &command.id, &self.token, &outcome)
                .await;
            self.report
                .commands
                .push((command.id.clone(), outcome.clone()));
            if let Err(err) = reported {
                return Some(RunEnd::from_client_error(err));
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

    /// One turn, opening the session first if this is the run's first command.
    async fn turn(&mut self, profile: &RunProfile, command: &Command) -> TurnOutcome {
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
                (Err(outcome), Some(reason)) => {
                    Err(stopped_outcome(reason, outcome, &signals, profile))
                }
                (opened, _) => opened,
            };
            match opened {
                Ok(session) => {
                    self.report.workspace = Some(session.workspace.clone());
                    self.report.warm_sandbox = session.warm;
                    self.session = Some(session);
                    self.session_deadline = Some(Instant::now() + profile.max_duration);
                }
                Err(outcome) => return outcome,
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
            Some(reason) => stopped_outcome(reason, outcome, signals, profile),
            None => outcome,
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
        let bundle = match (&self.run.bundle, &materializer) {
            (Some(bundle), Some((plugin, settings))) => Some(BundleJob {
                materializer: plugin,
                bundle,
                options: settings.options(),
            }),
            _ => None,
        };
        let pool = runner.pool_for(profile).await;
        let source = match &pool {
            Some(pool) => SandboxSource::Pool(pool),
            None => SandboxSource::Cold {
                driver: runner.driver.as_ref(),
                workspace: runner.config.workspace.clone().unwrap_or_else(|| {
                    runner
                        .config
                        .workspace_root
                        .join(&self.run.id)
                        .join("workspace")
                }),
            },
        };
        let request = SessionRequest {
            run: &self.run,
            bundle,
            events: self.events.clone(),
            last_event_seq: self.run.last_event_seq,
            cancel_grace: runner.config.cancel_grace,
            cancel,
        };
        RunSession::open(&plugin, profile, source, request).await
    }
}

/// Resolves once the work on `command` must stop, and says why; `deadline` is the session's end.
async fn stop_reason(
    signals: &RunSignals,
    runner: &Runner,
    command: &str,
    deadline: Option<Instant>,
) -> StopReason {
    let max_duration = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = signals.run_cancelled().cancelled() => StopReason::Cancelled("the run was cancelled"),
        () = signals.command_cancelled(command) => StopReason::Cancelled("the command was cancelled"),
        () = signals.lease_lost().cancelled() => StopReason::LeaseLost,
        () = runner.shutdown.aborting().cancelled() => StopReason::Cancelled("the runner was shut down"),
        () = max_duration => StopReason::MaxDuration,
    }
}

/// What to report for work the host stopped for `reason`; `outcome` is what the work returned.
fn stopped_outcome(
    reason: StopReason,
    outcome: TurnOutcome,
    signals: &RunSignals,
    profile: &RunProfile,
) -> TurnOutcome {
    match reason {
        StopReason::LeaseLost => TurnOutcome::failed(
            FailureKind::LeaseLost,
            format!(
                "the turn was stopped: {}",
                signals.lost_reason().unwrap_or_default()
            ),
        ),
        StopReason::MaxDuration => TurnOutcome::failed(
            FailureKind::TurnTimeout,
            format!(
                "the session reached its maximum duration of {:?}",
                profile.max_duration
            ),
        ),
        StopReason::Cancelled(why) if outcome.status == TerminalStatus::Cancelled => TurnOutcome {
            message: Some(why.to_string()),
            ..outcome
        },
        StopReason::Cancelled(_) => outcome,
    }
}
