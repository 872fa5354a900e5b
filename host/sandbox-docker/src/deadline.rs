//! A deadline on every call to the Docker engine. A wedged container (a runc that cannot kill its
//! processes, a daemon stuck on one container's lock) answers some calls late or never; without a
//! bound one such call would hold its run, the reaper or shutdown forever. Each kind of call has
//! its own bound (docs/operations.md, "Docker call deadlines"), and a call past it is an error
//! naming the call and the container.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

/// The kinds of engine calls the host makes, each with its own deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Ping,
    InspectImage,
    CreateNetwork,
    RemoveNetwork,
    ListNetworks,
    InspectNetwork,
    CreateContainer,
    StartContainer,
    InspectContainer,
    RemoveContainer,
    ListContainers,
    CreateExec,
    /// Until the exec is attached (its output then streams under the process's own timeouts).
    StartExec,
    InspectExec,
    /// A short helper script run to its end (the OOM counter).
    HelperScript,
}

impl Call {
    /// What the call is called in messages (the docker CLI's words).
    pub(super) fn name(self) -> &'static str {
        match self {
            Call::Ping => "ping",
            Call::InspectImage => "image inspect",
            Call::CreateNetwork => "network create",
            Call::RemoveNetwork => "network rm",
            Call::ListNetworks => "network ls",
            Call::InspectNetwork => "network inspect",
            Call::CreateContainer => "container create",
            Call::StartContainer => "container start",
            Call::InspectContainer => "container inspect",
            Call::RemoveContainer => "container rm --force",
            Call::ListContainers => "container ls",
            Call::CreateExec => "exec create",
            Call::StartExec => "exec start",
            Call::InspectExec => "exec inspect",
            Call::HelperScript => "exec (helper script)",
        }
    }

    /// How long the call may take. Generous against a busy engine (a loaded 2-core machine starts
    /// a container in a few seconds), short against a wedged one.
    pub(super) fn deadline(self) -> Duration {
        Duration::from_secs(match self {
            Call::Ping => 5,
            Call::InspectImage
            | Call::InspectContainer
            | Call::InspectExec
            | Call::ListContainers
            | Call::ListNetworks
            | Call::InspectNetwork => 15,
            Call::CreateExec | Call::StartExec | Call::HelperScript => 15,
            Call::CreateNetwork | Call::RemoveNetwork => 30,
            Call::CreateContainer | Call::StartContainer | Call::RemoveContainer => 60,
        })
    }
}

/// A failed engine call: the engine's own answer, or no answer within the call's deadline.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error(transparent)]
    Engine(#[from] bollard::errors::Error),
    #[error(
        "the Docker call `{call}` for {target} got no answer within {}s (its deadline): the engine \
         or the container is wedged",
        after.as_secs()
    )]
    TimedOut {
        call: &'static str,
        target: String,
        after: Duration,
    },
}

impl CallError {
    /// The engine answered 404: the container, exec or network does not exist.
    pub(super) fn is_not_found(&self) -> bool {
        matches!(
            self,
            CallError::Engine(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }
}

/// Runs one engine call on `target` (a container, exec, image or network, as `container ID`) within
/// the call's deadline.
pub(super) async fn bounded<T>(
    call: Call,
    target: &str,
    request: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(call.deadline(), request).await {
        Ok(answer) => answer.map_err(CallError::Engine),
        Err(_) => {
            warn!(call = call.name(), target, deadline = ?call.deadline(), "Docker call passed its deadline");
            Err(CallError::TimedOut {
                call: call.name(),
                target: target.to_string(),
                after: call.deadline(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_is_an_error_naming_the_call_and_the_target() {
        let never = std::future::pending::<Result<(), bollard::errors::Error>>();
        let err = bounded(Call::InspectContainer, "container abc", never)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`container inspect`"), "{text}");
        assert!(text.contains("container abc"), "{text}");
        assert!(text.contains("15s"), "{text}");
        assert!(!err.is_not_found());
    }
}
