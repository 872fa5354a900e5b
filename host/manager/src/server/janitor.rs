//! The manager's background sweep: finishes deletions under way and, with a retention, removes
//! runs that finished longer ago. Each sweep is one bounded transaction ([`SWEEP_ROWS`] rows);
//! while work is left, sweeps follow each other after a short pause so requests get the store
//! in between.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Manager;
use crate::store::SWEEP_ROWS;

/// Pause between sweeps while a backlog is being worked off.
const BACKLOG_PAUSE: Duration = Duration::from_millis(50);

pub(super) struct Janitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Janitor {
    pub(super) fn spawn(manager: Manager) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (retention, interval) = (manager.retention(), manager.sweep_interval());
            let mut pause = interval;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                // Awaited whole: a sweep is never cut off mid-transaction by a shutdown.
                let grace = manager.blob_grace();
                let swept = manager
                    .blocking(move |s| {
                        let report = s.sweep(retention, SWEEP_ROWS)?;
                        let blobs = s.sweep_blobs(grace)?;
                        if blobs > 0 {
                            tracing::info!(blobs, "removed blobs no run refers to");
                        }
                        Ok(report)
                    })
                    .await;
                pause = match swept {
                    Ok(report) => {
                        for run in &report.expired_runs {
                            manager.hub().bump_and_forget(run);
                        }
                        if !report.expired_runs.is_empty() {
                            tracing::info!(
                                runs = report.expired_runs.len(),
                                rows = report.rows_removed,
                                "removed runs past the retention"
                            );
                        }
                        if report.more { BACKLOG_PAUSE } else { interval }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the retention sweep failed");
                        interval
                    }
                };
            }
        });
        Self { stop, task }
    }

    /// Stops after the sweep under way, if any.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
