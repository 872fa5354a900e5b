//! Keeping a run's lease: a heartbeat every lease/3 with jitter, each sent on its own so a slow
//! reply never holds back the next one, and a local timer that stops the run's work *before* the
//! manager could hand the run to anyone else.
//!
//! The timing budget (docs/operations.md, "Lease timing"): the manager's lease runs from when it
//! granted a heartbeat, which is never earlier than when this runner sent it. So counting from
//! the send of the latest heartbeat that succeeded, the runner stops its turn at
//! `lease − kill grace − margin` and the turn's processes are dead (TERM, grace, KILL) by
//! `lease − margin`, before the manager's lease ends; the manager then waits its safety gap more
//! before it grants the run again. No clocks are compared across machines.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use super::metrics::RunnerMetrics;
use super::signals::RunSignals;
use super::status::RunnerStatus;
use crate::manager::protocol::{Cancellation, HeartbeatReply};
use crate::manager::{ClientError, ManagerClient, RetryPolicy};

/// Shortest lease a runner works under: below it the kill grace and margin leave no time to work.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
/// Most heartbeats waiting for their reply at once (a reply is awaited at most the self-stop
/// time, about eight intervals).
const MAX_IN_FLIGHT: usize = 10;

/// How a lease's length is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseBudget {
    pub lease: Duration,
    /// TERM → KILL grace of the turn's processes: 5 s, or a sixth of a short lease.
    pub kill_grace: Duration,
    /// Slack for scheduling and the kill itself: a tenth of the lease, 300 ms to 2 s.
    pub margin: Duration,
}

impl LeaseBudget {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            kill_grace: (lease / 6).min(Duration::from_secs(5)),
            margin: (lease / 10).clamp(Duration::from_millis(300), Duration::from_secs(2)),
        }
    }

    /// How long after sending the latest successful heartbeat the runner stops its turn.
    pub fn self_stop_after(&self) -> Duration {
        self.lease.saturating_sub(self.kill_grace + self.margin)
    }

    /// The nominal time between heartbeats: a third of the lease, or less when the lease is
    /// short, so that a manager answering in half the lease still renews it in time (a beat's
    /// send plus its round trip stays within the self-stop time).
    pub fn heartbeat_every(&self) -> Duration {
        let spare = self.self_stop_after().saturating_sub(self.lease / 2);
        (self.lease / 3)
            .min(spare / 2)
            .max(Duration::from_millis(100))
    }

    /// One heartbeat interval: [`LeaseBudget::heartbeat_every`] minus up to 20% of jitter so
    /// many runners started together do not beat in step.
    pub fn heartbeat_interval(&self) -> Duration {
        jittered(self.heartbeat_every())
    }
}

/// The heartbeat task of one run; stops when dropped or [`LeaseKeeper::stop`]ped.
pub struct LeaseKeeper {
    stop: CancellationToken,
    /// Cancelled once a heartbeat succeeded.
    renewed: CancellationToken,
    task: Option<JoinHandle<()>>,
}

fn jittered(nominal: Duration) -> Duration {
    nominal.mul_f64(1.0 - 0.2 * rand::rng().random::<f64>())
}

/// Who hears how heartbeats go: the status listener's readiness and the runner's metrics.
pub struct Observers {
    pub status: Arc<RunnerStatus>,
    pub metrics: Arc<RunnerMetrics>,
}

impl LeaseKeeper {
    /// Starts heartbeating `run`. `renewed_at` is when the last successful heartbeat was sent.
    pub fn start(
        client: &ManagerClient,
        run: String,
        token: String,
        budget: LeaseBudget,
        renewed_at: Instant,
        signals: Arc<RunSignals>,
        observers: Observers,
    ) -> Self {
        let Observers { status, metrics } = observers;
        // One try per beat, bounded by the time left to stop: the next beat is the retry.
        let client = client
            .clone()
            .with_retry(RetryPolicy::none())
            .with_request_timeout(budget.self_stop_after().max(Duration::from_millis(500)));
        let stop = CancellationToken::new();
        let renewed = CancellationToken::new();
        let beats = Beats {
            client,
            run,
            token,
            budget,
            signals,
            status,
            metrics,
            renewed: renewed.clone(),
        };
        let task = tokio::spawn(
            beats
                .run(renewed_at, stop.clone())
                .instrument(tracing::Span::current()),
        );
        Self {
            stop,
            renewed,
            task: Some(task),
        }
    }

    /// Resolves once a heartbeat succeeded.
    pub async fn renewed_once(&self) {
        self.renewed.cancelled().await
    }

    /// Stops heartbeating (after the run's terminal status was accepted or the run released).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Beat = (Instant, Result<HeartbeatReply, ClientError>);

struct Beats {
    client: ManagerClient,
    run: String,
    token: String,
    budget: LeaseBudget,
    signals: Arc<RunSignals>,
    status: Arc<RunnerStatus>,
    metrics: Arc<RunnerMetrics>,
    renewed: CancellationToken,
}

impl Beats {
    fn lose_lease(&self, why: String) {
        self.metrics.lease_lost();
        self.signals.lose_lease(why);
    }

    /// Beats from now on until stopped or the lease is lost; `renewed_at` is when the lease was
    /// last renewed (or granted) at the earliest.
    async fn run(self, mut renewed_at: Instant, stop: CancellationToken) {
        let budget = self.budget;
        let mut in_flight: JoinSet<Beat> = JoinSet::new();
        let mut next_beat = Instant::now();
        // After a failed beat the next comes sooner, so a blip costs little of the budget.
        let quick_retry = (budget.lease / 20).max(Duration::from_millis(100));
        loop {
            let stop_at = renewed_at + budget.self_stop_after();
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(stop_at) => {
                    self.lose_lease(format!(
                        "no heartbeat succeeded for {:?}; the turn is stopped before the {:?} \
                         lease can run out on the manager",
                        budget.self_stop_after(),
                        budget.lease
                    ));
                    return;
                }
                () = tokio::time::sleep_until(next_beat) => {
                    if in_flight.len() < MAX_IN_FLIGHT {
                        let (client, run, token) =
                            (self.client.clone(), self.run.clone(), self.token.clone());
                        in_flight.spawn(async move {
                            let sent_at = Instant::now();
                            (sent_at, client.heartbeat(&run, &token, None).await)
                        }.instrument(tracing::Span::current()));
                    }
                    next_beat = Instant::now() + budget.heartbeat_interval();
                }
                Some(joined) = in_flight.join_next() => {
                    let Ok((sent_at, reply)) = joined else { continue };
                    match &reply {
                        Err(err) if err.status().is_none_or(|s| s >= 500) => {
                            self.status.manager_failed(err);
                            self.metrics.heartbeat_failed();
                        }
                        _ => self.status.manager_answered(),
                    }
                    match reply {
                        Ok(reply) => {
                            // Replies may come back out of order: the newest send counts.
                            renewed_at = renewed_at.max(sent_at);
                            debug!(expires_at_ms = reply.lease_expires_at_ms, "lease renewed");
                            self.signals.apply(&Cancellation {
                                run_status: reply.run_status,
                                cancel_run: reply.cancel_run,
                                cancel_commands: reply.cancel_commands,
                            });
                            self.renewed.cancel();
                        }
                        Err(err) if err.is_lease_lost() => {
                            self.lose_lease(format!("the manager fenced this runner: {err}"));
                            return;
                        }
                        Err(err) if err.status() == Some(409) || err.status() == Some(404) => {
                            // The run ended or vanished: nothing left to hold.
                            self.signals
                                .lose_lease(format!("the manager refused the heartbeat: {err}"));
                            return;
                        }
                        Err(err) => {
                            warn!(error = %err, "heartbeat failed; the next one comes sooner");
                            next_beat = next_beat.min(Instant::now() + quick_retry);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_at_most_a_third_of_the_lease_minus_jitter() {
        let budget = LeaseBudget::new(Duration::from_secs(60));
        assert_eq!(budget.heartbeat_every(), Duration::from_millis(11_500));
        for _ in 0..100 {
            let interval = budget.heartbeat_interval();
            assert!(interval <= Duration::from_millis(11_500));
            assert!(interval >= Duration::from_millis(9_200));
        }
        let long = LeaseBudget::new(Duration::from_secs(3600));
        assert_eq!(long.heartbeat_every(), Duration::from_millis(896_500));
    }

    #[test]
    fn a_round_trip_of_half_the_lease_still_renews_in_time() {
        for secs in [3, 6, 10, 60, 600, 3600] {
            let budget = LeaseBudget::new(Duration::from_secs(secs));
            let worst = budget.heartbeat_every() + budget.lease / 2;
            assert!(
                worst < budget.self_stop_after(),
                "lease {secs}s: {budget:?}"
            );
        }
    }

    #[test]
    fn the_turn_is_dead_before_the_lease_can_end() {
        for secs in [3, 6, 10, 30, 60, 600, 3600] {
            let budget = LeaseBudget::new(Duration::from_secs(secs));
            let dead_by = budget.self_stop_after() + budget.kill_grace;
            assert!(dead_by < budget.lease, "lease {secs}s: {budget:?}");
            assert!(budget.lease - dead_by >= Duration::from_millis(300));
            // At least two heartbeat intervals fit before the self-stop.
            assert!(budget.self_stop_after() > budget.lease / 2, "lease {secs}s");
        }
        let long = LeaseBudget::new(Duration::from_secs(60));
        assert_eq!(long.kill_grace, Duration::from_secs(5));
        assert_eq!(long.self_stop_after(), Duration::from_secs(53));
    }
}
