//! How a claimed run ends: its session closed, its events flushed and its terminal status
//! reported — or, when the runner drains, is shut down or lost the lease, the run given back for
//! its next attempt within a bounded time.

use std::time::Duration;

use tracing::{info, warn};

use super::RunReport;
use super::run_end::RunEnd;
use super::work::{RELEASE_BUDGET, RunWork};
use crate::manager::RetryPolicy;
use crate::manager::protocol::RunStatusUpdate;
use crate::outcome::{FailureKind, TurnOutcome};

impl RunWork<'_> {
    /// Runs the command loop, closes the session, flushes the events and reports the status, or
    /// gives the run back when the runner drains, is shut down, or lost its lease.
    pub(super) async fn finish_run(mut self) -> RunReport {
        let end = self.command_loop().await;
        if let Some(session) = self.session.take() {
            // A run stopped by the host closes quickly: its plugin had its turn's grace already.
            let wall = match end {
                RunEnd::Cancelled(_) | RunEnd::LeaseLost(_) => self.runner.config.cancel_grace,
                _ => Duration::MAX,
            };
            session.close(wall, self.runner.shutdown.aborting()).await;
        }
        if let Some(why) = end.release_reason() {
            return self.release(why).await;
        }
        let mut outcome = self.final_outcome(end);

        let attempt_dir = self.attempt_dir();
        let RunWork {
            runner,
            run,
            token,
            signals,
            events,
            shipper,
            mut report,
            ..
        } = self;
        drop(events);
        let flushed = shipper.flush().await;
        if let Err(err) = &flushed {
            warn!(error = %err, "not every event reached the manager");
        }
        report.events = shipper.finish().await;
        if report.events.undelivered > 0 && outcome.failure_kind != Some(FailureKind::LeaseLost) {
            // The run is not reported as it happened but short: it fails, naming what was lost.
            let why = flushed
                .err()
                .map_or_else(String::new, |err| format!(": {err}"));
            outcome = TurnOutcome::failed(
                FailureKind::HostError,
                format!(
                    "{} event(s) were neither stored by the manager nor counted as dropped{why}",
                    report.events.undelivered
                ),
            );
        }
        info!(status = %outcome.status, failure_kind = ?outcome.failure_kind, "run ended");
        report.outcome = outcome.clone();
        let update = RunStatusUpdate {
            status: outcome.status,
            failure_kind: outcome.failure_kind,
            message: outcome.message.clone(),
        };
        // The status is retried (heartbeats go on meanwhile) until the manager accepts it, the
        // lease is lost, or the runner is shut down.
        let reported = tokio::select! {
            reported = runner.client.run_status(&run.id, &token, &update) => Some(reported),
            () = signals.lease_lost().cancelled() => None,
            () = runner.shutdown.aborting().cancelled() => None,
        };
        match reported {
            Some(Ok(_)) => report.reported = true,
            Some(Err(err)) if err.status() == Some(409) => {
                info!(error = %err, "the manager did not take the run status: the run is no longer ours")
            }
            Some(Err(err)) => warn!(error = %err, "could not report the run status"),
            None => warn!(
                "gave up reporting the run status: the lease was lost or the runner shut down"
            ),
        }
        if report.reported {
            super::work_results::remove_workspace(&runner.config, &attempt_dir);
        }
        report
    }

    /// Gives the run back for its next attempt: the turn is already stopped and the session
    /// closed; the events go out first, then the release, each within [`RELEASE_BUDGET`].
    async fn release(self, why: String) -> RunReport {
        info!(reason = %why, "giving the run back for another attempt");
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
        match tokio::time::timeout(RELEASE_BUDGET, shipper.flush()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => warn!(error = %err, "not every event reached the manager"),
            Err(_) => warn!("the manager did not take the last events in time"),
        }
        if let Ok(stats) = tokio::time::timeout(RELEASE_BUDGET, shipper.finish()).await {
            report.events = stats;
        }
        let client = runner
            .client
            .clone()
            .with_request_timeout(RELEASE_BUDGET)
            .with_retry(RetryPolicy {
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                deadline: RELEASE_BUDGET,
                ..RetryPolicy::default()
            });
        let released =
            tokio::time::timeout(RELEASE_BUDGET, client.release(&run.id, &token, why.clone()));
        match released.await {
            Ok(Ok(_)) => report.reported = true,
            // Fenced or ended meanwhile, or unreachable: the lease runs out on its own.
            Ok(Err(err)) => info!(error = %err, "the manager did not take the release"),
            Err(_) => info!("the manager did not answer the release in time"),
        }
        report.released = Some(why);
        report
    }

    /// The terminal status to report for how the loop ended.
    fn final_outcome(&self, end: RunEnd) -> TurnOutcome {
        match end {
            RunEnd::Finished(why) => crate::outcome::run_outcome(&self.report.commands)
                .unwrap_or_else(|| TurnOutcome {
                    message: Some(format!("{why}; no command ran")),
                    ..TurnOutcome::completed()
                }),
            RunEnd::Cancelled(message) => TurnOutcome::cancelled(message),
            RunEnd::Failed(kind, message) => TurnOutcome::failed(kind, message),
            RunEnd::LeaseLost(message) => TurnOutcome::failed(FailureKind::LeaseLost, message),
            RunEnd::Drained | RunEnd::ShutDown => {
                TurnOutcome::cancelled("the runner stopped before the run ended")
            }
            RunEnd::AlreadyEnded(status) => TurnOutcome {
                message: Some(format!("the run was ended elsewhere ({status})")),
                ..TurnOutcome::cancelled("")
            },
        }
    }
}
