//! How the command loop of a run ends (`RunEnd`), and the rules that decide it: a manager call
//! guarded by the lease and shutdown, and which failure kinds end a run's session.

use super::signals::RunSignals;
use crate::manager::ClientError;
use crate::manager::protocol::RunStatus;
use crate::outcome::FailureKind;

/// Why the command loop stopped.
#[derive(Debug)]
pub(super) enum RunEnd {
    /// Commands done (one-shot) or idle timeout: the run ends as its commands did.
    Finished(&'static str),
    Cancelled(String),
    Failed(FailureKind, String),
    /// The lease is gone (fenced, or not renewed in time): the run is released, not ended.
    LeaseLost(String),
    /// The runner drains: the run is released after the running turn.
    Drained,
    /// The runner was shut down (second signal): the turn was killed, the run is released.
    ShutDown,
    /// Somebody else ended the run.
    AlreadyEnded(RunStatus),
}

impl RunEnd {
    /// Why the run is given back instead of ended, when it is.
    pub(super) fn release_reason(&self) -> Option<String> {
        match self {
            RunEnd::LeaseLost(why) => Some(format!("the lease was lost: {why}")),
            RunEnd::Drained => Some("the runner drained".into()),
            RunEnd::ShutDown => Some("the runner was shut down".into()),
            _ => None,
        }
    }
}

impl RunEnd {
    pub(super) fn from_client_error(err: ClientError) -> Self {
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

/// Runs a manager call unless the lease is lost or the runner shut down first (a call may retry
/// for minutes while the manager is away).
pub(super) async fn guarded<T>(
    signals: &RunSignals,
    shutdown: &super::Shutdown,
    call: impl std::future::Future<Output = T>,
) -> Result<T, RunEnd> {
    tokio::select! {
        out = call => Ok(out),
        () = signals.lease_lost().cancelled() => {
            Err(RunEnd::LeaseLost(signals.lost_reason().unwrap_or_default()))
        }
        () = shutdown.aborting().cancelled() => Err(RunEnd::ShutDown),
    }
}

/// Failure kinds after which the run's session cannot go on.
pub(super) fn ends_the_run(kind: FailureKind) -> bool {
    !matches!(
        kind,
        FailureKind::AgentError
            | FailureKind::ModelError
            | FailureKind::AuthError
            | FailureKind::TurnTimeout
            | FailureKind::OomKilled
    )
}
