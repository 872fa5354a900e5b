//! The cancellation long-poll: while a run is worked on, one request to
//! `GET /v1/runs/{run}/cancellation` stays open, so a client's cancel reaches the turn within
//! milliseconds rather than at the next heartbeat.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{Instrument, debug};

use super::signals::RunSignals;
use crate::manager::ManagerClient;

/// How long one long-poll waits before it is renewed.
const WAIT: Duration = Duration::from_secs(30);

/// Runs until dropped.
pub struct CancelWatch {
    task: JoinHandle<()>,
}

impl CancelWatch {
    pub fn start(client: &ManagerClient, run: String, signals: Arc<RunSignals>) -> Self {
        let client = client.clone();
        let task = tokio::spawn(
            async move {
                loop {
                    match client.watch_cancellation(&run, WAIT).await {
                        Ok(state) => {
                            signals.apply(&state);
                            if state.run_status.is_terminal() || state.cancel_run {
                                return;
                            }
                            if !state.cancel_commands.is_empty() {
                                // Wait for the runner to settle those before asking again.
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        // The heartbeat carries the same news; a broken watch only costs latency.
                        Err(err) => {
                            debug!(error = %err, "cancellation watch failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Self { task }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
