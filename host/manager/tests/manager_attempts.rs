//! Attempts, the re-grant safety gap and the command state machine on the embedded manager (real
//! HTTP, real redb file, manual clock: time moves only when a test says so).

use std::sync::Arc;
use std::time::Duration;

use aac_manager::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};
use aac_manager::protocol::{
    AppendEvents, AttemptEnd, CommandStatus, CreateRun, EnqueueCommand, Lease, RegisterRunner,
    RunStatus, RunStatusUpdate,
};
use aac_manager::server::start;
use aac_manager::{
    ClientError, LeasePolicy, Manager, ManagerClient, ManagerConfig, ManagerHandle, ManualClock,
    RetryPolicy,
};

const LEASE: Duration = Duration::from_secs(30);
const GAP: Duration = Duration::from_secs(5);

struct World {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    handle: ManagerHandle,
    client: ManagerClient,
}

async fn world(max_attempts: u32) -> World {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let config = ManagerConfig::new("tok")
        .with_clock(Arc::new(clock.clone()))
        .with_policy(LeasePolicy {
            regrant_gap: GAP,
            max_attempts,
        });
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let client = ManagerClient::new(handle.url(), "tok")
        .unwrap()
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(10),
            deadline: Duration::from_secs(2),
            ..RetryPolicy::default()
        });
    World {
        _dir: dir,
        clock,
        handle,
        client,
    }
}

impl World {
    async fn runner(&self, id: &str) -> String {
        self.client
            .register_runner(RegisterRunner {
                id: Some(id.into()),
                ..RegisterRunner::default()
            })
            .await
            .unwrap()
            .id
    }

    /// A shell run with commands `c1`, `c2`… queued.
    async fn run(&self, commands: usize, max_attempts: Option<u32>) -> String {
        let run = self
            .client
            .create_run(CreateRun {
                id: None,
                backend: "shell".into(),
                bundle: None,
                config: serde_json::json!({}),
                max_attempts,
                require_labels: Default::default(),
            })
            .await
            .unwrap();
        for i in 1..=commands {
            self.client
                .enqueue(
                    &run.id,
                    EnqueueCommand {
                        id: Some(format!("c{i}")),
                        prompt: format!("echo {i}"),
                        payload: serde_json::Value::Null,
                    },
                )
                .await
                .unwrap();
        }
        run.id
    }

    /// Lets `lease` run out and its safety gap pass.
    fn lapse(&self) {
        self.clock.advance(LEASE + GAP);
    }

    async fn status(&self, run: &str, cmd: &str) -> CommandStatus {
        self.client.get_command(run, cmd).await.unwrap().status
    }

    async fn append(&self, run: &str, lease: &Lease, seq: u64) {
        let event = TurnEvent {
            seq,
            command_id: "c1".into(),
            kind: "output.stdout".into(),
            payload: serde_json::json!({ "text": format!("line {seq}") }),
            attempt_id: Some("made-up-by-the-runner".into()),
            emitted_at_ms: None,
            received_at_ms: None,
        };
        self.client
            .append_events(
                run,
                &lease.lease_token,
                &AppendEvents {
                    events: vec![event],
                    dropped: 0,
                },
            )
            .await
            .unwrap();
    }
}

fn conflict_code(err: &ClientError) -> String {
    match err {
        ClientError::Lease { code, .. } | ClientError::Status { code, .. } => code.clone(),
        other => panic!("expected a 409, got {other}"),
    }
}

#[tokio::test]
async fn an_expired_lease_is_not_granted_again_before_the_safety_gap() {
    let w = world(3).await;
    let (a, b) = (w.runner("a").await, w.runner("b").await);
    let run = w.run(1, None).await;
    let first = w.client.claim(&run, &a, LEASE).await.unwrap();
    assert_eq!(
        (first.attempt, first.attempt_id.as_str()),
        (1, &*format!("att_{run}_1"))
    );
    assert_eq!(first.lease_ms, LEASE.as_millis() as u64);

    w.clock.advance(LEASE + GAP - Duration::from_millis(1));
    let err = w.client.claim(&run, &b, LEASE).await.unwrap_err();
    assert!(err.is_lease_conflict(), "inside the gap: {err}");
    assert_eq!(
        w.client.get_run(&run).await.unwrap().status,
        RunStatus::Running
    );
    assert!(
        w.client
            .claim_next(&b, LEASE, None)
            .await
            .unwrap()
            .is_none()
    );

    w.clock.advance(Duration::from_millis(1));
    assert_eq!(
        w.client.get_run(&run).await.unwrap().status,
        RunStatus::Queued
    );
    let second = w.client.claim_next(&b, LEASE, None).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    let shown = w.client.get_run(&run).await.unwrap();
    assert_eq!(shown.attempts.len(), 2);
    assert_eq!(shown.attempts[0].end, Some(AttemptEnd::LeaseExpired));
    assert_eq!(shown.attempts[0].runner_id, a);
    assert_eq!(shown.attempts[0].placement.kind, "host-process");
    assert_eq!(shown.attempts[1].runner_id, b);
    assert!(shown.attempts[1].end.is_none());
    let err = w
        .client
        .heartbeat(&run, &first.lease_token, None)
        .await
        .unwrap_err();
    assert!(err.is_lease_lost(), "the first attempt is fenced: {err}");
    w.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_released_run_is_queued_again_and_its_interrupted_command_rerun() {
    let w = world(3).await;
    let (a, b) = (w.runner("a").await, w.runner("b").await);
    let run = w.run(2, None).await;
    let first = w.client.claim(&run, &a, LEASE).await.unwrap();
    w.client.ack(&run, "c1", &first.lease_token).await.unwrap();
    w.append(&run, &first, 1).await;

    let released = w
        .client
        .release(&run, &first.lease_token, "the runner was shut down")
        .await
        .unwrap();
    assert_eq!(released.status, RunStatus::Queued);
    assert_eq!(released.attempts[0].end, Some(AttemptEnd::Released));
    assert_eq!(
        released.attempts[0].message.as_deref(),
        Some("the runner was shut down")
    );
    // Nothing had finished: a fresh workspace is the state c1 started from, so it runs again.
    assert_eq!(w.status(&run, "c1").await, CommandStatus::Queued);
    assert_eq!(w.status(&run, "c2").await, CommandStatus::Queued);
    // A retried release is a no-op; any other use of the released token is fenced.
    let again = w
        .client
        .release(&run, &first.lease_token, "again")
        .await
        .unwrap();
    assert_eq!(again.attempts.len(), 1);
    let err = w
        .client
        .ack(&run, "c1", &first.lease_token)
        .await
        .unwrap_err();
    assert!(err.is_lease_lost(), "{err}");

    // No gap after a release: the run is free at once.
    let second = w.client.claim(&run, &b, LEASE).await.unwrap();
    assert_eq!(second.attempt, 2);
    w.client.ack(&run, "c1", &second.lease_token).await.unwrap();
    w.append(&run, &second, 2).await;
    let events = w.client.events(&run, 0).await.unwrap();
    let attempts: Vec<_> = events.iter().map(|e| e.attempt_id.clone()).collect();
    assert_eq!(
        attempts,
        [
            Some(first.attempt_id.clone()),
            Some(second.attempt_id.clone())
        ],
        "each event carries the attempt that appended it, whatever the runner sent"
    );
    w.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lost_attempt_after_a_finished_command_fails_the_run_naming_it() {
    let w = world(3).await;
    let (a, b) = (w.runner("a").await, w.runner("b").await);
    let run = w.run(3, None).await;
    let first = w.client.claim(&run, &a, LEASE).await.unwrap();
    w.client.ack(&run, "c1", &first.lease_token).await.unwrap();
    w.client
        .command_status(&run, "c1", &first.lease_token, &TurnOutcome::completed())
        .await
        .unwrap();
    w.client.ack(&run, "c2", &first.lease_token).await.unwrap();
    w.lapse();

    let err = w.client.claim(&run, &b, LEASE).await.unwrap_err();
    assert_eq!(conflict_code(&err), "run-terminal", "{err}");
    let ended = w.client.get_run(&run).await.unwrap();
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.failure_kind, Some(FailureKind::LeaseLost));
    let message = ended.message.unwrap();
    assert!(message.contains(&first.attempt_id), "{message}");
    assert!(
        message.contains("c2") && message.contains("c1"),
        "{message}"
    );
    assert_eq!(w.status(&run, "c1").await, CommandStatus::Completed);
    assert_eq!(w.status(&run, "c2").await, CommandStatus::Failed);
    assert_eq!(
        w.status(&run, "c3").await,
        CommandStatus::Cancelled,
        "no command of an ended run stays queued"
    );
    w.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_poison_run_fails_after_max_attempts_naming_them() {
    let w = world(5).await;
    let run = w.run(1, Some(2)).await;
    for i in 0..2 {
        let runner = w.runner(&format!("doomed-{i}")).await;
        let lease = w
            .client
            .claim_next(&runner, LEASE, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.run.id, run);
        w.client.ack(&run, "c1", &lease.lease_token).await.unwrap();
        w.lapse();
    }
    let shown = w.client.get_run(&run).await.unwrap();
    assert_eq!(
        shown.status,
        RunStatus::Failed,
        "shown failed once the last lease lapsed"
    );
    let late = w.runner("late").await;
    assert!(
        w.client
            .claim_next(&late, LEASE, None)
            .await
            .unwrap()
            .is_none(),
        "a run out of attempts is not handed out"
    );
    let ended = w.client.get_run(&run).await.unwrap();
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.failure_kind, Some(FailureKind::LeaseLost));
    let message = ended.message.unwrap();
    assert!(message.contains("all 2 of its attempts"), "{message}");
    assert!(message.contains(&format!("att_{run}_1")), "{message}");
    assert!(message.contains(&format!("att_{run}_2")), "{message}");
    assert_eq!(ended.attempts.len(), 2);
    assert_eq!(w.status(&run, "c1").await, CommandStatus::Failed);

    let err = w
        .client
        .create_run(CreateRun {
            id: None,
            backend: "shell".into(),
            bundle: None,
            config: serde_json::Value::Null,
            max_attempts: Some(0),
            require_labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("max_attempts"), "{err}");
    w.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_command_state_machine_is_enforced() {
    let w = world(3).await;
    let a = w.runner("a").await;
    let run = w.run(4, None).await;
    let lease = w.client.claim(&run, &a, LEASE).await.unwrap();
    let token = &lease.lease_token;

    let err = w
        .client
        .command_status(&run, "c1", token, &TurnOutcome::completed())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "command-state", "{err}");
    assert!(err.to_string().contains("never acked"), "{err}");
    assert_eq!(w.status(&run, "c1").await, CommandStatus::Queued);

    // Cancelled while queued: stays cancelled whatever the lease holder says.
    w.client.cancel_command(&run, "c2").await.unwrap();
    w.client.ack(&run, "c2", token).await.unwrap();
    let err = w
        .client
        .command_status(&run, "c2", token, &TurnOutcome::completed())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "command-state", "{err}");
    assert_eq!(w.status(&run, "c2").await, CommandStatus::Cancelled);

    // [auth-error, completed]: the run is failed, whatever the runner says.
    w.client.ack(&run, "c1", token).await.unwrap();
    let auth = TurnOutcome::failed(FailureKind::AuthError, "bad key");
    w.client
        .command_status(&run, "c1", token, &auth)
        .await
        .unwrap();
    // A repeat of the same outcome is a no-op; a different one is refused.
    w.client
        .command_status(&run, "c1", token, &auth)
        .await
        .unwrap();
    let err = w
        .client
        .command_status(&run, "c1", token, &TurnOutcome::completed())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "command-state", "{err}");
    w.client.ack(&run, "c3", token).await.unwrap();
    w.client
        .command_status(&run, "c3", token, &TurnOutcome::completed())
        .await
        .unwrap();
    let ended = w
        .client
        .run_status(
            &run,
            token,
            &RunStatusUpdate {
                status: TerminalStatus::Completed,
                failure_kind: None,
                message: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.failure_kind, Some(FailureKind::AuthError));
    assert!(ended.message.unwrap().contains("c1"));
    assert_eq!(ended.attempts[0].end, Some(AttemptEnd::Finished));
    assert_eq!(
        w.status(&run, "c4").await,
        CommandStatus::Cancelled,
        "ending the run ends its queued commands"
    );
    w.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_with_cancel_requested_is_never_claimed_again() {
    let w = world(3).await;
    let (a, b) = (w.runner("a").await, w.runner("b").await);
    let run = w.run(1, None).await;
    let lease = w.client.claim(&run, &a, LEASE).await.unwrap();
    w.client.ack(&run, "c1", &lease.lease_token).await.unwrap();
    let asked = w.client.cancel_run(&run).await.unwrap();
    assert!(asked.cancel_requested);
    assert_eq!(asked.status, RunStatus::Running, "its holder ends it");
    w.lapse();

    assert!(
        w.client
            .claim_next(&b, LEASE, None)
            .await
            .unwrap()
            .is_none()
    );
    let ended = w.client.get_run(&run).await.unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert_eq!(ended.attempts[0].end, Some(AttemptEnd::RunEnded));
    assert_eq!(w.status(&run, "c1").await, CommandStatus::Cancelled);
    let err = w.client.claim(&run, &b, LEASE).await.unwrap_err();
    assert_eq!(conflict_code(&err), "run-terminal", "{err}");

    // Released while a cancel is pending: it ends cancelled instead of going back to the queue.
    let other = w.run(1, None).await;
    let lease = w.client.claim(&other, &a, LEASE).await.unwrap();
    w.client.cancel_run(&other).await.unwrap();
    let released = w
        .client
        .release(&other, &lease.lease_token, "drained")
        .await
        .unwrap();
    assert_eq!(released.status, RunStatus::Cancelled);
    w.handle.shutdown().await.unwrap();
}
