//! Why the host stops a run's work before it ends by itself, and what it reports then: a cancel,
//! a lost lease, a shutdown or the session's maximum duration.

use tokio::time::Instant;

use super::Runner;
use super::profile::RunProfile;
use super::signals::RunSignals;
use crate::outcome::{FailureKind, TerminalStatus, TurnOutcome};

/// Why a running turn was stopped by the host.
pub(super) enum StopReason {
    Cancelled(&'static str),
    LeaseLost,
    ShutDown,
    MaxDuration,
}

/// Resolves once the work on `command` must stop, and says why; `deadline` is the session's end.
pub(super) async fn stop_reason(
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
        () = runner.shutdown.aborting().cancelled() => StopReason::ShutDown,
        () = max_duration => StopReason::MaxDuration,
    }
}

/// What to report for work the host stopped for `reason`; `outcome` is what the work returned.
/// (A lost lease or a shutdown releases the run instead; the callers handle those first.)
pub(super) fn stopped_outcome(
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
        StopReason::Cancelled(_) | StopReason::ShutDown => outcome,
    }
}
