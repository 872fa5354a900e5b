//! Lease races and edge cases on the embedded manager (real HTTP, real redb file, manual clock).

use std::sync::Arc;
use std::time::Duration;

use aac_manager::protocol::{CreateRun, RegisterRunner, RunStatus};
use aac_manager::server::start;
use aac_manager::{Manager, ManagerClient, ManagerConfig, ManualClock, RetryPolicy};

const LEASE: Duration = Duration::from_secs(30);

async fn setup(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
) -> (aac_manager::ManagerHandle, ManagerClient) {
    let config = ManagerConfig::new("tok").with_clock(Arc::new(clock.clone()));
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
    (handle, client)
}

fn shell() -> CreateRun {
    CreateRun {
        id: None,
        backend: "shell".into(),
        bundle: None,
        config: serde_json::Value::Null,
        max_attempts: None,
        require_labels: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_runners_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = setup(&dir, &clock).await;
    let run = client.create_run(shell()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        let run = run.id.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .register_runner(RegisterRunner {
                    name: format!("racer-{i}"),
                    ..RegisterRunner::default()
                })
                .await
                .unwrap();
            client.claim(&run, &r.id, LEASE).await.map(|l| (r.id, l))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(w) => winners.push(w),
            Err(e) => assert!(e.is_lease_conflict(), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let (winner, lease) = &winners[0];
    let now = client.get_run(&run.id).await.unwrap();
    assert_eq!(now.runner_id.as_ref(), Some(winner));
    client
        .heartbeat(&run.id, &lease.lease_token, None)
        .await
        .unwrap();

    // claim-next races too: one queued run, several pool runners, one winner.
    let queued = client.create_run(shell()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .register_runner(RegisterRunner {
                    name: format!("pool-{i}"),
                    ..RegisterRunner::default()
                })
                .await
                .unwrap();
            client.claim_next(&r.id, LEASE, None).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap() {
            got.push(l.run.id);
        }
    }
    assert_eq!(got, [queued.id]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_nobody_took_is_revived_by_its_holders_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = setup(&dir, &clock).await;
    let run = client.create_run(shell()).await.unwrap();
    let r = client
        .register_runner(RegisterRunner::default())
        .await
        .unwrap();
    let lease = client.claim(&run.id, &r.id, LEASE).await.unwrap();
    clock.advance(Duration::from_secs(45));
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Queued
    );
    let hb = client
        .heartbeat(&run.id, &lease.lease_token, None)
        .await
        .unwrap();
    assert_eq!(hb.run_status, RunStatus::Running);
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Running
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_lease_token_is_never_shown_to_clients() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = setup(&dir, &clock).await;
    let run = client.create_run(shell()).await.unwrap();
    let r = client
        .register_runner(RegisterRunner::default())
        .await
        .unwrap();
    let lease = client.claim(&run.id, &r.id, LEASE).await.unwrap();
    let http = reqwest::Client::new();
    for path in [format!("/v1/runs/{}", run.id), "/v1/runs".to_owned()] {
        let text = http
            .get(format!("{}{path}", handle.url()))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains(&lease.lease_token),
            "{path} leaks the lease token"
        );
        assert!(text.contains(&r.id), "{path} shows the holder");
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn out_of_range_leases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (handle, client) = setup(&dir, &clock).await;
    let run = client.create_run(shell()).await.unwrap();
    let r = client
        .register_runner(RegisterRunner::default())
        .await
        .unwrap();
    for d in [Duration::ZERO, Duration::from_secs(3601)] {
        let err = client.claim(&run.id, &r.id, d).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
    }
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Queued
    );
    handle.shutdown().await.unwrap();
}
