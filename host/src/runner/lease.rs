//! Keeping a run's lease: heartbeat every lease/3 with jitter, and a local lease timer — if no
//! heartbeat succeeded for a whole lease, the run's work stops by itself (`lease-lost`), whether or
//! not the manager can be reached to say so.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use super::signals::RunSignals;
use crate::manager::protocol::Cancellation;
use crate::manager::{ManagerClient, RetryPolicy};

/// The heartbeat task of one run; stops when dropped or [`LeaseKeeper::stop`]ped.
pub struct LeaseKeeper {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// One heartbeat interval: a third of the lease, minus up to 20% of jitter so many runners
/// started together do not beat in step.
pub fn heartbeat_interval(lease: Duration) -> Duration {
    let third = lease / 3;
    third.mul_f64(1.0 - 0.2 * rand::rng().random::<f64>())
}

impl LeaseKeeper {
    /// Starts heartbeating `run`. `renewed_at` is when the last successful heartbeat was sent.
    pub fn start(
        client: &ManagerClient,
        run: String,
        token: String,
        lease: Duration,
        renewed_at: Instant,
        signals: Arc<RunSignals>,
    ) -> Self {
        // Retry one heartbeat with backoff for at most a lease; the local timer decides anyway.
        let client = client.clone().with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: (lease / 6).max(Duration::from_millis(100)),
            deadline: lease,
            ..RetryPolicy::default()
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            beat(client, run, token, lease, renewed_at, signals, stop.clone())
                .instrument(tracing::Span::current()),
        );
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops heartbeating (after the run's terminal status was accepted).
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

async fn beat(
    client: ManagerClient,
    run: String,
    token: String,
    lease: Duration,
    mut renewed_at: Instant,
    signals: Arc<RunSignals>,
    stop: CancellationToken,
) {
    // Beats are scheduled from when the previous one was sent, not from when its reply came, so a
    // slow manager does not stretch the gaps between them.
    let mut last_sent = renewed_at;
    loop {
        let expires = renewed_at + lease;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(expires) => {
                signals.lose_lease(format!("no heartbeat succeeded for a whole lease ({lease:?})"));
                return;
            }
            () = tokio::time::sleep_until(last_sent + heartbeat_interval(lease)) => {}
        }
        let sent_at = Instant::now();
        last_sent = sent_at;
        let reply = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(expires) => {
                signals.lose_lease(format!("no heartbeat succeeded for a whole lease ({lease:?})"));
                return;
            }
            reply = client.heartbeat(&run, &token, None) => reply,
        };
        match reply {
            Ok(reply) => {
                renewed_at = sent_at;
                debug!(expires_at_ms = reply.lease_expires_at_ms, "lease renewed");
                signals.apply(&Cancellation {
                    run_status: reply.run_status,
                    cancel_run: reply.cancel_run,
                    cancel_commands: reply.cancel_commands,
                });
            }
            Err(err) if err.is_lease_lost() => {
                signals.lose_lease(format!("the manager fenced this runner: {err}"));
                return;
            }
            Err(err) if err.status() == Some(409) || err.status() == Some(404) => {
                // The run ended or vanished: nothing left to hold.
                signals.lose_lease(format!("the manager refused the heartbeat: {err}"));
                return;
            }
            Err(err) => warn!(error = %err, "heartbeat failed; retrying until the lease runs out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_third_of_the_lease_minus_jitter() {
        let lease = Duration::from_secs(60);
        for _ in 0..100 {
            let interval = heartbeat_interval(lease);
            assert!(interval <= Duration::from_secs(20));
            assert!(interval >= Duration::from_secs(16));
        }
    }
}
