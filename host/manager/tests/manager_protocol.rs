//! The embedded manager over real HTTP on loopback, with a real redb file in a temp dir. Time for
//! leases comes from a manual clock; nothing here measures how long anything took.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aac_manager::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};
use aac_manager::protocol::{
    AppendEvents, CommandStatus, CreateRun, EnqueueCommand, RegisterRunner, RunStatus,
    RunStatusUpdate,
};
use aac_manager::server::start;
use aac_manager::{
    ClientError, Manager, ManagerClient, ManagerConfig, ManagerHandle, ManualClock, RetryPolicy,
};
use futures::StreamExt;

const TOKEN: &str = "test-token";
const LEASE: Duration = Duration::from_secs(30);

async fn start_manager(db: &Path, clock: &ManualClock) -> (ManagerHandle, ManagerClient) {
    let config = ManagerConfig::new(TOKEN).with_clock(Arc::new(clock.clone()));
    let manager = Manager::open(db, config).expect("open manager store");
    let handle = start(manager).await.expect("start manager");
    let client = ManagerClient::new(handle.url(), TOKEN)
        .unwrap()
        .with_retry(fast_retry());
    (handle, client)
}

/// Waits until `n` runs have a long-poll or an event stream waiting on them in the manager.
async fn until_watched(handle: &ManagerHandle, n: usize) {
    for _ in 0..1000 {
        if handle.manager().watched_runs() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("waited 10 s for {n} watched runs");
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        deadline: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
}

fn shell_run() -> CreateRun {
    CreateRun::new("shell")
}

fn prompt(p: &str) -> EnqueueCommand {
    EnqueueCommand {
        id: None,
        prompt: p.into(),
        payload: serde_json::json!({"n": 1}),
    }
}

async fn runner(client: &ManagerClient, name: &str) -> String {
    client
        .register_runner(RegisterRunner {
            name: name.into(),
            ..RegisterRunner::default()
        })
        .await
        .expect("register runner")
        .id
}

fn event(seq: u64, cmd: &str) -> TurnEvent {
    TurnEvent {
        seq,
        command_id: cmd.into(),
        kind: "output".into(),
        payload: serde_json::json!({"line": format!("line {seq}")}),
        attempt_id: None,
        emitted_at_ms: None,
        received_at_ms: None,
    }
}

fn batch(seqs: std::ops::RangeInclusive<u64>, cmd: &str) -> AppendEvents {
    AppendEvents {
        events: seqs.map(|s| event(s, cmd)).collect(),
        dropped: 0,
    }
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();

    let http = reqwest::Client::new();
    let create = serde_json::json!({"backend": "shell"});
    for auth in [None, Some("Bearer wrong-token"), Some("Basic dGVzdA==")] {
        for (method, path, body) in [
            ("POST", "/v1/runs".to_owned(), Some(create.clone())),
            ("POST", format!("/v1/runs/{}/cancel", run.id), None),
            (
                "POST",
                format!("/v1/runs/{}/commands", run.id),
                Some(serde_json::json!({"prompt": "x"})),
            ),
            ("GET", "/v1/runs".to_owned(), None),
        ] {
            let mut req = http.request(method.parse().unwrap(), format!("{}{path}", handle.url()));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{method} {path} with {auth:?}");
            let body: serde_json::Value = resp.json().await.expect("401 has a JSON body");
            assert_eq!(body["error"], "unauthorized", "{body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
        }
    }

    let wrong = ManagerClient::new(handle.url(), "wrong-token")
        .unwrap()
        .with_retry(fast_retry());
    let err = wrong.create_run(shell_run()).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
    assert_eq!(err.status(), Some(401));

    // Nothing happened: one run, still queued, no command.
    let runs = client.list_runs(None).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Queued);
    assert!(!runs[0].cancel_requested);
    assert_eq!(runs[0].last_command_seq, 0);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn second_runner_claim_conflicts_and_same_runner_reclaim_fences_old_token() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let r2 = runner(&client, "two").await;

    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();
    assert_eq!(lease.run.status, RunStatus::Running);
    assert_eq!(lease.run.runner_id.as_deref(), Some(r1.as_str()));
    assert_eq!(lease.lease_expires_at_ms, clock_ms(&clock) + 30_000);

    let err = client.claim(&run.id, &r2, LEASE).await.unwrap_err();
    assert!(err.is_lease_conflict(), "{err}");
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains(&r1), "names the holder: {err}");

    // The same runner claiming again gets a new token; the old one is fenced.
    let again = client.claim(&run.id, &r1, LEASE).await.unwrap();
    assert_ne!(again.lease_token, lease.lease_token);
    let err = client
        .heartbeat(&run.id, &lease.lease_token, None)
        .await
        .unwrap_err();
    assert!(err.is_lease_lost(), "{err}");
    assert_eq!(err.failure_kind(), FailureKind::LeaseLost);
    client
        .heartbeat(&run.id, &again.lease_token, None)
        .await
        .unwrap();

    // Unknown run and unknown runner are 404s.
    let err = client.claim("run_missing", &r1, LEASE).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = client
        .claim(&run.id, "rnr_missing", LEASE)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    handle.shutdown().await.unwrap();
}

fn clock_ms(clock: &ManualClock) -> u64 {
    use aac_manager::Clock;
    clock.now_ms()
}

#[tokio::test]
async fn heartbeat_extends_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let r2 = runner(&client, "two").await;
    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();

    clock.advance(Duration::from_secs(20));
    let hb = client
        .heartbeat(&run.id, &lease.lease_token, None)
        .await
        .unwrap();
    assert_eq!(hb.lease_expires_at_ms, clock_ms(&clock) + 30_000);
    assert_eq!(hb.run_status, RunStatus::Running);
    assert!(!hb.cancel_run);
    assert!(hb.cancel_commands.is_empty());

    // Past the first expiry, but the heartbeat moved it: still held.
    clock.advance(Duration::from_secs(20));
    let err = client.claim(&run.id, &r2, LEASE).await.unwrap_err();
    assert!(err.is_lease_conflict(), "{err}");
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Running
    );

    // A heartbeat may also change the lease length.
    let hb = client
        .heartbeat(&run.id, &lease.lease_token, Some(Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(hb.lease_expires_at_ms, clock_ms(&clock) + 90_000);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_lease_is_taken_by_another_runner_and_the_first_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let r2 = runner(&client, "two").await;
    let old = client.claim(&run.id, &r1, LEASE).await.unwrap();
    let cmd = client.enqueue(&run.id, prompt("first")).await.unwrap();

    clock.advance(Duration::from_secs(31));
    // Nobody holds it now: it is claimable again, and listed as queued for pool runners.
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Queued
    );
    let queued = client.list_runs(Some(RunStatus::Queued)).await.unwrap();
    assert_eq!(queued.iter().map(|r| &r.id).collect::<Vec<_>>(), [&run.id]);

    let new = client.claim(&run.id, &r2, LEASE).await.unwrap();
    assert_eq!(new.run.runner_id.as_deref(), Some(r2.as_str()));

    let t = &old.lease_token;
    let errs = [
        client.heartbeat(&run.id, t, None).await.unwrap_err(),
        client
            .append_events(&run.id, t, &batch(1..=2, &cmd.id))
            .await
            .unwrap_err(),
        client.ack(&run.id, &cmd.id, t).await.unwrap_err(),
        client
            .command_status(&run.id, &cmd.id, t, &TurnOutcome::completed())
            .await
            .unwrap_err(),
        client
            .run_status(
                &run.id,
                t,
                &RunStatusUpdate {
                    status: TerminalStatus::Completed,
                    failure_kind: None,
                    message: None,
                },
            )
            .await
            .unwrap_err(),
    ];
    for err in errs {
        assert!(err.is_lease_lost(), "{err}");
        assert!(matches!(err, ClientError::Lease { .. }));
    }
    // None of them had an effect.
    let run_now = client.get_run(&run.id).await.unwrap();
    assert_eq!(run_now.status, RunStatus::Running);
    assert_eq!(run_now.last_event_seq, 0);
    let c = client.get_command(&run.id, &cmd.id).await.unwrap();
    assert_eq!(c.status, CommandStatus::Queued);
    // The new holder works.
    client
        .ack(&run.id, &cmd.id, &new.lease_token)
        .await
        .unwrap();
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn retried_event_batches_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();
    let cmd = client.enqueue(&run.id, prompt("p")).await.unwrap();
    let t = &lease.lease_token;

    let first = client
        .append_events(&run.id, t, &batch(1..=3, &cmd.id))
        .await
        .unwrap();
    assert_eq!((first.last_seq, first.stored), (3, 3));
    let retry = client
        .append_events(&run.id, t, &batch(1..=3, &cmd.id))
        .await
        .unwrap();
    assert_eq!((retry.last_seq, retry.stored), (3, 0));
    let mut overlap = batch(2..=5, &cmd.id);
    overlap.dropped = 2;
    let next = client.append_events(&run.id, t, &overlap).await.unwrap();
    assert_eq!((next.last_seq, next.stored, next.dropped_events), (5, 2, 2));

    let events = client.events(&run.id, 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let stored = TurnEvent {
        attempt_id: Some(lease.attempt_id.clone()),
        received_at_ms: Some(clock_ms(&clock)),
        ..event(4, &cmd.id)
    };
    assert_eq!(
        events[3], stored,
        "stored as sent, with the attempt that sent it"
    );
    let tail = client.events(&run.id, 3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    let r = client.get_run(&run.id).await.unwrap();
    assert_eq!((r.last_event_seq, r.dropped_events), (5, 2));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn long_poll_wakes_when_a_command_is_enqueued() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();

    let poller = {
        let client = client.clone();
        let id = run.id.clone();
        tokio::spawn(async move { client.poll_commands(&id, 0, Duration::from_secs(60)).await })
    };
    // Wait until the poll waits, so the enqueue below wakes it rather than finds it early.
    until_watched(&handle, 1).await;
    let cmd = client.enqueue(&run.id, prompt("wake up")).await.unwrap();
    let batch = poller.await.unwrap().unwrap();
    assert_eq!(batch.commands.len(), 1);
    assert_eq!(batch.commands[0].id, cmd.id);
    assert_eq!(batch.commands[0].seq, 1);
    assert_eq!(batch.commands[0].prompt, "wake up");

    // Past the last command, a short wait returns empty.
    let empty = client
        .poll_commands(&run.id, 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(empty.commands.is_empty());
    assert_eq!(empty.run_status, RunStatus::Queued);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancellation_reaches_the_heartbeat_reply() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();
    let t = &lease.lease_token;
    let c1 = client.enqueue(&run.id, prompt("one")).await.unwrap();
    let c2 = client.enqueue(&run.id, prompt("two")).await.unwrap();
    assert_eq!(
        client.ack(&run.id, &c1.id, t).await.unwrap().status,
        CommandStatus::Acked
    );

    // An acked command: cancellation is requested and shows on the heartbeat.
    let c = client.cancel_command(&run.id, &c1.id).await.unwrap();
    assert!(c.cancel_requested);
    assert_eq!(c.status, CommandStatus::Acked);
    // A queued command ends at once.
    let c = client.cancel_command(&run.id, &c2.id).await.unwrap();
    assert_eq!(c.status, CommandStatus::Cancelled);
    let hb = client.heartbeat(&run.id, t, None).await.unwrap();
    assert_eq!(hb.cancel_commands, vec![c1.id.clone()]);
    assert!(!hb.cancel_run);

    let r = client.cancel_run(&run.id).await.unwrap();
    assert!(r.cancel_requested);
    assert_eq!(r.status, RunStatus::Running);
    let hb = client.heartbeat(&run.id, t, None).await.unwrap();
    assert!(hb.cancel_run);

    // The runner reports the outcome; the run ends; the lease is released.
    client
        .command_status(
            &run.id,
            &c1.id,
            t,
            &TurnOutcome::cancelled("cancelled by the client"),
        )
        .await
        .unwrap();
    let done = client
        .run_status(
            &run.id,
            t,
            &RunStatusUpdate {
                status: TerminalStatus::Cancelled,
                failure_kind: None,
                message: Some("cancelled".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Cancelled);
    let hb = client.heartbeat(&run.id, t, None).await.unwrap_err();
    assert_eq!(hb.status(), Some(409));
    assert!(
        matches!(&hb, ClientError::Status { code, .. } if code == "run-terminal"),
        "{hb}"
    );

    // Cancelling a queued run ends it before any runner takes it.
    let queued = client.create_run(shell_run()).await.unwrap();
    let cancelled = client.cancel_run(&queued.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let err = client.claim(&queued.id, &r1, LEASE).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: 409, code, .. } if code == "run-terminal"),
        "{err}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn statuses_round_trip_with_thread_and_turn_ids() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();
    let t = &lease.lease_token;
    let cmd = client.enqueue(&run.id, prompt("p")).await.unwrap();
    let acked = client.ack(&run.id, &cmd.id, t).await.unwrap();
    assert_eq!(acked.acked_at_ms, Some(clock_ms(&clock)));
    assert_eq!(acked.finished_at_ms, None);
    clock.advance(Duration::from_millis(1_500));
    let finished_at = clock_ms(&clock);

    let outcome = TurnOutcome {
        thread_id: Some("thread-1".into()),
        turn_id: Some("turn-7".into()),
        ..TurnOutcome::failed(FailureKind::ModelError, "rate limited")
    };
    let c = client
        .command_status(&run.id, &cmd.id, t, &outcome)
        .await
        .unwrap();
    assert_eq!(c.status, CommandStatus::Failed);
    assert_eq!(c.outcome.as_ref(), Some(&outcome));
    assert_eq!(c.finished_at_ms, Some(finished_at));
    // A repeat (a retried request) changes nothing; another outcome is refused.
    clock.advance(Duration::from_millis(1_500));
    let again = client
        .command_status(&run.id, &cmd.id, t, &outcome)
        .await
        .unwrap();
    assert_eq!(again.outcome.as_ref(), Some(&outcome));
    assert_eq!(again.finished_at_ms, Some(finished_at));
    let err = client
        .command_status(&run.id, &cmd.id, t, &TurnOutcome::completed())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let kept = client.get_command(&run.id, &cmd.id).await.unwrap();
    assert_eq!(kept.outcome.as_ref(), Some(&outcome));

    let update = RunStatusUpdate {
        status: TerminalStatus::Failed,
        failure_kind: Some(FailureKind::BackendCrashed),
        message: Some("plugin trapped".into()),
    };
    let r = client.run_status(&run.id, t, &update).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    // Repeating the terminal status with the same lease is accepted and changes nothing.
    let r2 = client.run_status(&run.id, t, &update).await.unwrap();
    assert_eq!(r2.status, RunStatus::Failed);

    // On the wire the taxonomy is kebab-case.
    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/runs/{}", handle.url(), run.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["status"], "failed");
    assert_eq!(raw["failure_kind"], "backend-crashed");
    let err = client.enqueue(&run.id, prompt("late")).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn follow_streams_events_until_the_run_is_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();
    let t = lease.lease_token.clone();
    let cmd = client.enqueue(&run.id, prompt("p")).await.unwrap();
    client
        .append_events(&run.id, &t, &batch(1..=2, &cmd.id))
        .await
        .unwrap();

    let follower = spawn_follower(client.clone(), run.id.clone());
    until_watched(&handle, 1).await;
    client
        .append_events(&run.id, &t, &batch(3..=4, &cmd.id))
        .await
        .unwrap();
    client
        .append_events(&run.id, &t, &batch(3..=6, &cmd.id))
        .await
        .unwrap();
    client
        .run_status(
            &run.id,
            &t,
            &RunStatusUpdate {
                status: TerminalStatus::Completed,
                failure_kind: None,
                message: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(follower.await.unwrap(), [1, 2, 3, 4, 5, 6]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn claim_next_takes_the_oldest_queued_run() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let r1 = runner(&client, "pool").await;
    assert!(client.claim_next(&r1, LEASE, None).await.unwrap().is_none());
    let a = client.create_run(shell_run()).await.unwrap();
    clock.advance(Duration::from_millis(1));
    let b = client
        .create_run(CreateRun {
            backend: "codex@0.169".into(),
            ..shell_run()
        })
        .await
        .unwrap();
    let only_codex = client
        .claim_next(&r1, LEASE, Some(vec!["codex@0.169".into()]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only_codex.run.id, b.id);
    let next = client.claim_next(&r1, LEASE, None).await.unwrap().unwrap();
    assert_eq!(next.run.id, a.id);
    assert!(client.claim_next(&r1, LEASE, None).await.unwrap().is_none());
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn creates_with_the_same_id_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let req = CreateRun {
        id: Some("run_fixed".into()),
        bundle: Some(aac_manager::protocol::BundleRef {
            kind: "tar".into(),
            location: "file:///tmp/b.tar".into(),
            sha256: Some("ab".repeat(32)),
            size: Some(10),
        }),
        ..shell_run()
    };
    let a = client.create_run(req.clone()).await.unwrap();
    let b = client.create_run(req.clone()).await.unwrap();
    assert_eq!(a, b);
    let err = client
        .create_run(CreateRun {
            backend: "other".into(),
            ..req
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: 409, code, .. } if code == "id-conflict"),
        "{err}"
    );

    let cmd = EnqueueCommand {
        id: Some("cmd_fixed".into()),
        ..prompt("p")
    };
    let c1 = client.enqueue(&a.id, cmd.clone()).await.unwrap();
    let c2 = client.enqueue(&a.id, cmd).await.unwrap();
    assert_eq!(c1, c2);
    assert_eq!(client.get_run(&a.id).await.unwrap().last_command_seq, 1);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_on_the_same_file_keeps_runs_commands_events_and_lease() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.redb");
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&db, &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let lease = client.claim(&run.id, &r1, LEASE).await.unwrap();
    let t = lease.lease_token.clone();
    let c1 = client.enqueue(&run.id, prompt("one")).await.unwrap();
    let c2 = client.enqueue(&run.id, prompt("two")).await.unwrap();
    client.ack(&run.id, &c1.id, &t).await.unwrap();
    client
        .append_events(&run.id, &t, &batch(1..=3, &c1.id))
        .await
        .unwrap();

    handle.shutdown().await.unwrap();
    let (handle, client) = start_manager(&db, &clock).await;

    // The lease survived: heartbeat with the same token, and another runner still conflicts.
    let hb = client.heartbeat(&run.id, &t, None).await.unwrap();
    assert_eq!(hb.run_status, RunStatus::Running);
    let r2 = runner(&client, "two").await;
    assert!(
        client
            .claim(&run.id, &r2, LEASE)
            .await
            .unwrap_err()
            .is_lease_conflict()
    );
    // Commands survived, with their state.
    let batch_now = client
        .poll_commands(&run.id, 0, Duration::ZERO)
        .await
        .unwrap();
    let got: Vec<_> = batch_now
        .commands
        .iter()
        .map(|c| (c.id.clone(), c.status))
        .collect();
    assert_eq!(
        got,
        [
            (c1.id.clone(), CommandStatus::Acked),
            (c2.id.clone(), CommandStatus::Queued)
        ]
    );
    // Events survived; a batch retried across the restart is not duplicated.
    let again = client
        .append_events(&run.id, &t, &batch(2..=4, &c1.id))
        .await
        .unwrap();
    assert_eq!((again.last_seq, again.stored), (4, 1));
    let seqs: Vec<_> = client
        .events(&run.id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    // And the run can finish.
    let done = client
        .run_status(
            &run.id,
            &t,
            &RunStatusUpdate {
                status: TerminalStatus::Completed,
                failure_kind: None,
                message: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    handle.shutdown().await.unwrap();

    let (handle, client) = start_manager(&db, &clock).await;
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Completed
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let http = reqwest::Client::new();
    let url = handle.url();
    for (method, path, body) in [
        ("POST", "/v1/runs", "{not json"),
        ("POST", "/v1/runs", r#"{"config": {}}"#),
        ("GET", "/v1/runs?status=sleeping", ""),
        ("GET", "/v1/nothing-here", ""),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(matches!(status, 400 | 404), "{method} {path}: {status}");
        let body: serde_json::Value = resp.json().await.expect("JSON error body");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    // A runner mutation without the lease header is a 400, not a panic.
    let run = client.create_run(shell_run()).await.unwrap();
    let resp = http
        .post(format!("{url}/v1/runs/{}/heartbeat", run.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    handle.shutdown().await.unwrap();
}

/// The manager goes away mid-run and comes back on the same address and file: the runner's
/// append, retried through the outage, lands once; a follower reconnects and sees every event
/// exactly once; the terminal status arrives after recovery.
#[tokio::test]
async fn runner_and_follower_ride_through_a_manager_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.redb");
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&db, &clock).await;
    let addr = handle.addr();
    let patient = client.clone().with_retry(RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        deadline: Duration::from_secs(60),
        ..RetryPolicy::default()
    });
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    let t = client.claim(&run.id, &r1, LEASE).await.unwrap().lease_token;
    let cmd = client.enqueue(&run.id, prompt("p")).await.unwrap();
    client
        .append_events(&run.id, &t, &batch(1..=2, &cmd.id))
        .await
        .unwrap();

    let follower = spawn_follower(patient.clone(), run.id.clone());
    until_watched(&handle, 1).await;
    handle.shutdown().await.unwrap();

    // While the manager is down the runner keeps retrying its batch.
    let appender = {
        let client = patient.clone();
        let (id, t, c) = (run.id.clone(), t.clone(), cmd.id.clone());
        tokio::spawn(async move { client.append_events(&id, &t, &batch(2..=5, &c)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let config = ManagerConfig::new(TOKEN).with_clock(Arc::new(clock.clone()));
    let manager = Manager::open(&db, config).unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let handle = aac_manager::server::start_on(listener, manager).unwrap();

    let reply = appender.await.unwrap().unwrap();
    assert_eq!(reply.last_seq, 5);
    patient
        .run_status(
            &run.id,
            &t,
            &RunStatusUpdate {
                status: TerminalStatus::Completed,
                failure_kind: None,
                message: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(follower.await.unwrap(), [1, 2, 3, 4, 5]);
    let seqs: Vec<_> = client
        .events(&run.id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn long_poll_wakes_on_cancellation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = start_manager(&dir.path().join("m.redb"), &clock).await;
    let run = client.create_run(shell_run()).await.unwrap();
    let r1 = runner(&client, "one").await;
    client.claim(&run.id, &r1, LEASE).await.unwrap();
    let poller = {
        let client = client.clone();
        let id = run.id.clone();
        tokio::spawn(async move { client.poll_commands(&id, 0, Duration::from_secs(60)).await })
    };
    until_watched(&handle, 1).await;
    client.cancel_run(&run.id).await.unwrap();
    let batch = poller.await.unwrap().unwrap();
    assert!(batch.commands.is_empty());
    assert!(batch.cancel_requested);
    assert_eq!(batch.run_status, RunStatus::Running);
    handle.shutdown().await.unwrap();
}

/// Follows a run's events from the start until the stream ends; yields the sequence numbers seen.
fn spawn_follower(client: ManagerClient, run: String) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut stream = client.follow_events(&run, 0).await.unwrap();
        let mut seqs = Vec::new();
        while let Some(e) = stream.next().await {
            seqs.push(e.unwrap().seq);
        }
        seqs
    })
}
