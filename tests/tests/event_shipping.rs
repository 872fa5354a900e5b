//! Event shipping when the manager does not take batches: a batch that failed stays buffered and
//! goes again, events still undelivered when the shipper stops are counted as dropped on the run,
//! and when even that count cannot reach the manager the run fails naming how many events it
//! lost. Nothing is ever silently short. Real manager, a fault proxy between it and the runner,
//! and (for the run) the shell plugin in a real container.

use std::time::Duration;

use aac_host::manager::protocol::{RegisterRunner, RunStatus};
use aac_host::manager::{ManagerClient, RetryPolicy};
use aac_host::outcome::{FailureKind, TerminalStatus, TurnEvent};
use aac_host::runner::BatchPolicy;
use aac_host::runner::events::EventShipper;
use aac_tests::fault_proxy::{FaultAction, FaultProxy};
use aac_tests::runs::{TOKEN, TestManager, runner_config, shell_runner};
use aac_tests::test_host;
use axum::http::Method;

/// A client through `proxy` that gives up on a failing call after `deadline`.
fn impatient_client(proxy: &FaultProxy, deadline: Duration) -> ManagerClient {
    ManagerClient::new(&proxy.url, TOKEN)
        .unwrap()
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            deadline,
            ..RetryPolicy::default()
        })
}

fn line(seq: u64) -> TurnEvent {
    TurnEvent {
        seq,
        command_id: "c1".into(),
        kind: "output.stdout".into(),
        payload: serde_json::json!({ "text": seq.to_string() }),
        attempt_id: None,
        emitted_at_ms: None,
        received_at_ms: None,
    }
}

/// A run leased to a runner, and its lease token.
async fn leased_run(manager: &TestManager, runner: &str) -> (String, String) {
    let client = manager.client();
    let run = manager.shell_run(&["echo never"]).await;
    client
        .register_runner(RegisterRunner {
            id: Some(runner.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let lease = client
        .claim(&run.id, runner, Duration::from_secs(60))
        .await
        .unwrap();
    (run.id, lease.lease_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_the_manager_did_not_take_go_again_and_arrive_whole() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    let (run, token) = leased_run(&manager, "r-retry").await;
    let client = impatient_client(&proxy, Duration::from_millis(300));
    let policy = BatchPolicy {
        max_events: 10,
        ..BatchPolicy::default()
    };
    let (events, shipper) = EventShipper::start(&client, run.clone(), token, policy);

    // The manager answers 500 to every batch: the flush fails, but nothing leaves the buffer.
    proxy.inject(Method::POST, "/events", FaultAction::Status(500));
    for seq in 1..=95 {
        events.send(line(seq)).unwrap();
    }
    let failed = shipper
        .flush()
        .await
        .expect_err("the manager took no batch");
    assert!(!failed.fatal, "a 500 is not a lease loss: {failed}");
    assert!(proxy.count("/events") >= 2, "the batch was retried");
    assert!(manager.client().events(&run, 0).await.unwrap().is_empty());

    // Once the manager takes batches again, every event arrives, in order, none counted dropped.
    proxy.clear();
    for seq in 96..=100 {
        events.send(line(seq)).unwrap();
    }
    let stats = shipper.flush().await.expect("the manager is back");
    assert_eq!((stats.sent, stats.dropped, stats.undelivered), (100, 0, 0));
    drop(events);
    shipper.finish().await;
    let stored = manager.client().events(&run, 0).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert_eq!(
        manager.client().get_run(&run).await.unwrap().dropped_events,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_still_undelivered_at_the_end_are_counted_or_reported_lost() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    let (run, token) = leased_run(&manager, "r-end").await;
    let client = impatient_client(&proxy, Duration::from_millis(300));
    let (events, shipper) =
        EventShipper::start(&client, run.clone(), token.clone(), BatchPolicy::default());
    for seq in 1..=30 {
        events.send(line(seq)).unwrap();
    }
    shipper
        .flush()
        .await
        .expect("the manager takes the first events");

    // Batches with events fail (the manager is overloaded by them), but the shipper's last
    // request, with only the count of what it could not deliver, gets through.
    proxy.inject(Method::POST, "/events", FaultAction::StatusOver(503, 100));
    for seq in 31..=50 {
        events.send(line(seq)).unwrap();
    }
    assert!(shipper.flush().await.is_err());
    drop(events);
    let stats = shipper.finish().await;
    assert_eq!((stats.sent, stats.dropped), (30, 20), "{stats:?}");
    let stored = manager.client().get_run(&run).await.unwrap();
    let events = manager.client().events(&run, 0).await.unwrap();
    assert_eq!(
        events.len() as u64 + stored.dropped_events,
        50,
        "{} stored, {} dropped: {stats:?}",
        events.len(),
        stored.dropped_events
    );
    assert_eq!(stats.undelivered, 0, "{stats:?}");

    // A shipper whose manager never answers again says how many events it lost.
    let (events, shipper) =
        EventShipper::start(&client, run.clone(), token, BatchPolicy::default());
    proxy.clear();
    proxy.inject(Method::POST, "/events", FaultAction::Status(503));
    for seq in 51..=57 {
        events.send(line(seq)).unwrap();
    }
    drop(events);
    let stats = shipper.finish().await;
    assert_eq!((stats.dropped, stats.undelivered), (7, 7), "{stats:?}");
}

/// Through the runner: a manager that takes every call but the run's events fails the run as
/// `host-error`, naming how many events were lost, rather than completing it short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_events_never_reach_the_manager_fails_naming_them() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    proxy.inject(Method::POST, "/events", FaultAction::Status(503));
    let client = impatient_client(&proxy, Duration::from_secs(1));
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let run = manager.shell_run(&["echo one; echo two"]).await;
    let runner = shell_runner(client, &host, runner_config("r-lost", root.path())).await;

    let report = runner.run(&run.id).await.unwrap();
    assert_eq!(report.status(), TerminalStatus::Failed, "{report:?}");
    assert!(report.events.undelivered >= 2, "{:?}", report.events);
    let stored = manager.client().get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Failed, "{stored:?}");
    assert_eq!(stored.failure_kind, Some(FailureKind::HostError));
    let message = stored.message.unwrap_or_default();
    assert!(
        message.contains("neither stored by the manager nor counted as dropped"),
        "{message}"
    );
}
