//! What the manager told a run's runner to stop: run cancellation, command cancellations and a
//! lost lease. Fed by the heartbeat replies and by the cancellation long-poll, read by the turn loop.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::manager::protocol::Cancellation;

#[derive(Debug)]
pub struct RunSignals {
    cancel_run: CancellationToken,
    lease_lost: CancellationToken,
    lost_reason: Mutex<Option<String>>,
    cancel_commands: watch::Sender<BTreeSet<String>>,
}

impl Default for RunSignals {
    fn default() -> Self {
        Self {
            cancel_run: CancellationToken::new(),
            lease_lost: CancellationToken::new(),
            lost_reason: Mutex::new(None),
            cancel_commands: watch::channel(BTreeSet::new()).0,
        }
    }
}

impl RunSignals {
    /// Records what a heartbeat reply or the cancellation long-poll reported.
    pub fn apply(&self, cancellation: &Cancellation) {
        if cancellation.cancel_run {
            self.cancel_run.cancel();
        }
        if !cancellation.cancel_commands.is_empty() {
            self.cancel_commands.send_if_modified(|ids| {
                let before = ids.len();
                ids.extend(cancellation.cancel_commands.iter().cloned());
                ids.len() != before
            });
        }
    }

    /// The lease is gone (fenced by another claim, or not renewed for a whole lease).
    pub fn lose_lease(&self, reason: impl Into<String>) {
        let mut slot = self.lost_reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        drop(slot);
        self.lease_lost.cancel();
    }

    pub fn run_cancelled(&self) -> &CancellationToken {
        &self.cancel_run
    }

    pub fn lease_lost(&self) -> &CancellationToken {
        &self.lease_lost
    }

    pub fn lost_reason(&self) -> Option<String> {
        self.lost_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once `command` was asked to be cancelled.
    pub async fn command_cancelled(&self, command: &str) {
        let mut rx = self.cancel_commands.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends when the id shows up.
        let _ = rx.wait_for(|ids| ids.contains(command)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::RunStatus;

    #[tokio::test]
    async fn command_cancellation_wakes_only_its_command() {
        let signals = RunSignals::default();
        signals.apply(&Cancellation {
            run_status: RunStatus::Running,
            cancel_run: false,
            cancel_commands: vec!["cmd_2".into()],
        });
        signals.command_cancelled("cmd_2").await;
        let other = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            signals.command_cancelled("cmd_1"),
        );
        assert!(other.await.is_err(), "cmd_1 was never cancelled");
        assert!(!signals.run_cancelled().is_cancelled());
    }

    #[test]
    fn the_first_reason_for_a_lost_lease_is_kept() {
        let signals = RunSignals::default();
        signals.lose_lease("fenced");
        signals.lose_lease("timer");
        assert_eq!(signals.lost_reason().as_deref(), Some("fenced"));
        assert!(signals.lease_lost().is_cancelled());
    }
}
