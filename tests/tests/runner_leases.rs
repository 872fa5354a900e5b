//! Leases under faults, through a real manager, a fault proxy and the shell plugin in real
//! containers: a slow manager keeps the lease, a silent one makes the runner kill its turn before
//! the lease can end and give the run back, and an outage longer than the lease hands the run to
//! a next attempt instead of failing it.

use std::time::Duration;

use aac_host::manager::ManagerClient;
use aac_host::manager::protocol::{AttemptEnd, CommandStatus, RunStatus};
use aac_host::outcome::TerminalStatus;
use aac_tests::fault_proxy::{FaultAction, FaultProxy};
use aac_tests::runs::{TOKEN, TestManager, is_line, runner_config, shell_runner, wait_for_event};
use aac_tests::{containers_of_run, test_host};
use axum::http::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_answering_manager_keeps_the_lease() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    let lease = Duration::from_secs(10);
    // Every heartbeat takes half the lease to come back; the turn outlasts the lease.
    proxy.inject(Method::POST, "/heartbeat", FaultAction::Delay(lease / 2));
    let client = ManagerClient::new(&proxy.url, TOKEN).unwrap();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let run = manager
        .shell_run(&["echo started; sleep 14; echo finished"])
        .await;
    let mut config = runner_config("r-slow", root.path());
    config.lease = lease;
    let runner = shell_runner(client, &host, config).await;

    let report = runner.run(&run.id).await.unwrap();
    assert!(report.released.is_none(), "{report:?}");
    assert_eq!(report.status(), TerminalStatus::Completed, "{report:?}");
    let stored = manager.client().get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Completed);
    assert_eq!(
        stored.attempts.len(),
        1,
        "one attempt: {:?}",
        stored.attempts
    );
    assert!(
        proxy.count("/heartbeat") >= 3,
        "beats went out while earlier ones waited for their reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_manager_gets_the_turn_killed_before_the_lease_can_end() {
    let manager = TestManager::start().await;
    let watcher = manager.client();
    let proxy = FaultProxy::start(&manager.url()).await;
    let client = ManagerClient::new(&proxy.url, TOKEN).unwrap();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    // A turn that ignores TERM (only KILL stops it) and touches a workspace file while it lives.
    let run = manager
        .shell_run(&["trap '' TERM; echo started; while :; do touch alive; sleep 0.1; done"])
        .await;
    let runner = shell_runner(client, &host, runner_config("r-silent", root.path())).await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&watcher, &run.id, |e| is_line(e, "started")).await;
    proxy.inject(Method::POST, "/heartbeat", FaultAction::BlackHole);
    // The manager's lease now only runs out: remember its last expiry.
    let mut last_expiry = 0;
    let released = loop {
        let shown = watcher.get_run(&run.id).await.unwrap();
        if let Some(expiry) = shown.lease_expires_at_ms {
            last_expiry = last_expiry.max(expiry);
        }
        if shown.attempts[0].end.is_some() {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let report = work.await.unwrap().unwrap();
    assert!(report.released.is_some(), "{report:?}");
    assert_eq!(
        containers_of_run(&run.id).await,
        0,
        "the turn's sandbox is gone"
    );
    let attempt = &released.attempts[0];
    assert_eq!(attempt.end, Some(AttemptEnd::Released), "{attempt:?}");
    // The file's last touch is when the turn last ran (one clock: the same machine).
    let alive = report.workspace.unwrap().join("alive");
    let last_touch = std::fs::metadata(&alive)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        last_touch < last_expiry,
        "the turn was dead before the lease could end on the manager: last ran at {last_touch}, \
         lease until {last_expiry}"
    );
    assert_eq!(
        released.status,
        RunStatus::Queued,
        "another attempt may take it"
    );
    let c1 = watcher.get_command(&run.id, "c1").await.unwrap();
    assert_eq!(
        c1.status,
        CommandStatus::Queued,
        "nothing finished, so c1 runs again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_outage_longer_than_the_lease_hands_the_run_to_a_next_attempt() {
    let mut manager = TestManager::start().await;
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let run = manager
        .shell_run(&["echo started; sleep 1; echo finished"])
        .await;
    let runner = shell_runner(
        manager.client(),
        &host,
        runner_config("r-outage", root.path()),
    )
    .await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&manager.client(), &run.id, |e| is_line(e, "started")).await;
    manager.stop().await;
    let report = work.await.unwrap().unwrap();
    assert!(report.released.is_some(), "{report:?}");
    assert_eq!(containers_of_run(&run.id).await, 0);

    manager.restart().await;
    let client = manager.client();
    let first = client.get_run(&run.id).await.unwrap();
    assert!(
        !first.status.is_terminal(),
        "a lost lease is no verdict on the run: {first:?}"
    );
    let next = shell_runner(client.clone(), &host, runner_config("r-next", root.path())).await;
    let report = loop {
        match next.run(&run.id).await {
            Ok(report) => break report,
            // The old lease (and its safety gap) may still be running out.
            Err(err) if err.is_conflict() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(report.status(), TerminalStatus::Completed, "{report:?}");
    let done = client.get_run(&run.id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.attempts.len(), 2, "{:?}", done.attempts);
    assert_eq!(done.attempts[1].end, Some(AttemptEnd::Finished));
    assert_eq!(done.attempts[1].runner_id, "r-next");
    let events = client.events(&run.id, 0).await.unwrap();
    let started: Vec<_> = events
        .iter()
        .filter(|e| is_line(e, "started"))
        .map(|e| e.attempt_id.clone().unwrap())
        .collect();
    assert_eq!(
        started,
        [done.attempts[0].id.clone(), done.attempts[1].id.clone()],
        "the command ran once per attempt, and each event says which"
    );
    assert_eq!(containers_of_run(&run.id).await, 0);
}
