//! Wall-clock bounds on plugin calls. A plugin blocked in a host wait (a WASI sleep, a pollable
//! that never becomes ready) uses no CPU, so its CPU budget never ends it: every call is also raced
//! against a wall-clock deadline and a cancellation token. Dropping the call's future drops the
//! plugin's suspended stack; the Store must not be entered again afterwards.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::PluginIdentity;
use aac_protocol::outcome::{FailureKind, TurnOutcome};

/// Why a call was stopped before it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// The call took longer than its wall-clock deadline.
    Deadline(Duration),
    /// The caller cancelled it (run cancelled, lease lost, shutdown).
    Cancelled,
}

/// Runs `call` until it returns, `wall` passes or `cancel` fires, whichever comes first.
pub async fn bounded<F: Future>(
    call: F,
    wall: Duration,
    cancel: &CancellationToken,
) -> Result<F::Output, Interrupted> {
    tokio::select! {
        biased;
        output = call => Ok(output),
        () = cancel.cancelled() => Err(Interrupted::Cancelled),
        () = tokio::time::sleep(wall) => Err(Interrupted::Deadline(wall)),
    }
}

impl Interrupted {
    /// The outcome of call `call` of `who` stopped this way; `setting` names the limit that set
    /// the deadline (e.g. `[limits] call_wall`).
    pub fn outcome(self, who: &PluginIdentity, call: &str, setting: &str) -> TurnOutcome {
        match self {
            Interrupted::Deadline(wall) => TurnOutcome::failed(
                FailureKind::BackendTimeout,
                format!(
                    "{who} did not return from `{call}` within its wall-clock deadline of \
                     {wall:?} ({setting}); the call was abandoned"
                ),
            ),
            Interrupted::Cancelled => {
                TurnOutcome::cancelled(format!("`{call}` of {who} was cancelled"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_returns_ends_at_its_deadline_or_when_cancelled() {
        let cancel = CancellationToken::new();
        let never = std::future::pending::<()>();
        let ended = bounded(never, Duration::from_secs(5), &cancel).await;
        assert_eq!(ended, Err(Interrupted::Deadline(Duration::from_secs(5))));

        cancel.cancel();
        let ended = bounded(
            std::future::pending::<()>(),
            Duration::from_secs(5),
            &cancel,
        )
        .await;
        assert_eq!(ended, Err(Interrupted::Cancelled));

        let fresh = CancellationToken::new();
        assert_eq!(bounded(async { 7 }, Duration::ZERO, &fresh).await, Ok(7));
    }
}
