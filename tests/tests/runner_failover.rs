//! Runner processes (the real `aac-host` binary) that die or are stopped mid-run, against a real
//! manager: a `kill -9` leaves no sandbox process behind and the run goes on as its next attempt;
//! a run that kills its runners fails after `max_attempts`; signals stop a runner whatever it
//! waits on.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aac_host::manager::LeasePolicy;
use aac_host::manager::protocol::{AttemptEnd, RunStatus};
use aac_host::outcome::FailureKind;
use aac_tests::child::{signal, wait};
use aac_tests::fault_proxy::{FaultAction, FaultProxy};
use aac_tests::runs::{TOKEN, TestManager, is_line, wait_for_event};
use aac_tests::wait::{until, until_sync};
use aac_tests::{aac_host_binary, containers_with_label, docker, plugin};
use bollard::query_parameters::InspectContainerOptions;

/// Longest wait for a runner, a manager or Docker to get somewhere.
const WAIT: Duration = Duration::from_secs(60);

fn runner_process(url: &str, run: &str, runner_id: &str, cache: &std::path::Path) -> Child {
    Command::new(aac_host_binary())
        .args(["--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", url, "--run-id", run])
        .args([
            "--runner-id",
            runner_id,
            "--one-shot",
            "--lease",
            "3s",
            "--json",
        ])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting aac-host")
}

/// Containers of the run that still have a process running.
async fn running_containers_of_run(run: &str) -> Vec<String> {
    let driver = docker().await;
    let mut running = Vec::new();
    for id in containers_with_label(&format!("dev.aac-host.run={run}")).await {
        let inspect = driver
            .client()
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await;
        if inspect.is_ok_and(|i| i.state.and_then(|s| s.running).unwrap_or(false)) {
            running.push(id);
        }
    }
    running
}

/// Kills a runner process with SIGKILL once its turn printed `started`.
async fn kill_9_mid_turn(manager: &TestManager, run: &str, runner_id: &str) {
    let cache = tempfile::tempdir().unwrap();
    let child = runner_process(&manager.url(), run, runner_id, cache.path());
    let client = manager.client();
    let seen = client.events(run, 0).await.unwrap().len();
    wait_for_event(&client, run, |e| {
        e.seq > seen as u64 && is_line(e, "started")
    })
    .await;
    signal(&child, "KILL");
    let _ = wait(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_turn_leaves_no_process_and_the_next_attempt_completes_the_run() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let run = manager
        .shell_run(&["echo started; sleep 8; echo finished"])
        .await;
    kill_9_mid_turn(&manager, &run.id, "doomed").await;

    // The dead-man's switch: the host is gone, so is every process of its sandbox.
    until(
        "no sandbox of the killed runner to run any more",
        WAIT,
        || async { running_containers_of_run(&run.id).await.is_empty() },
    )
    .await;

    // Another runner, with another id, reaps the stopped container and finishes the run.
    let cache = tempfile::tempdir().unwrap();
    let (code, output) = loop {
        let child = runner_process(&manager.url(), &run.id, "rescuer", cache.path());
        let (code, output) = wait(child).await;
        if code != 4 {
            break (code, output);
        }
        // The killed runner's lease (and its safety gap) was still running out.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(code, 0, "{output}");
    let done = client.get_run(&run.id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[0].runner_id, "doomed");
    assert_eq!(done.attempts[0].end, Some(AttemptEnd::LeaseExpired));
    assert_eq!(done.attempts[1].runner_id, "rescuer");
    let events = client.events(&run.id, 0).await.unwrap();
    let by_attempt = |attempt: &str, text: &str| {
        events
            .iter()
            .any(|e| e.attempt_id.as_deref() == Some(attempt) && is_line(e, text))
    };
    assert!(by_attempt(&done.attempts[0].id, "started"));
    assert!(
        !by_attempt(&done.attempts[0].id, "finished"),
        "attempt 1 was killed"
    );
    assert!(by_attempt(&done.attempts[1].id, "started"));
    assert!(by_attempt(&done.attempts[1].id, "finished"));
    assert!(
        containers_with_label(&format!("dev.aac-host.run={}", run.id))
            .await
            .is_empty(),
        "no container of the run is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_kills_its_runners_fails_after_max_attempts_leaving_no_container() {
    let manager = TestManager::start_with(LeasePolicy {
        regrant_gap: Duration::from_secs(1),
        max_attempts: 2,
    })
    .await;
    let client = manager.client();
    let run = manager.shell_run(&["echo started; sleep 30"]).await;
    for i in 0..2 {
        until("the run to be queued again", WAIT, || async {
            client.get_run(&run.id).await.unwrap().status == RunStatus::Queued
        })
        .await;
        kill_9_mid_turn(&manager, &run.id, &format!("poisoned-{i}")).await;
    }
    until("the run to end", WAIT, || async {
        client.get_run(&run.id).await.unwrap().status.is_terminal()
    })
    .await;
    let failed = client.get_run(&run.id).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.failure_kind, Some(FailureKind::LeaseLost));
    let message = failed.message.clone().unwrap();
    for attempt in &failed.attempts {
        assert!(message.contains(&attempt.id), "{message}");
    }
    assert_eq!(failed.attempts.len(), 2);

    // Any host on the machine reaps them, whatever its runner id.
    docker().await.reap_orphans("someone-else").await.unwrap();
    assert!(
        containers_with_label(&format!("dev.aac-host.run={}", run.id))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_a_runner_whose_manager_never_answers() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    proxy.inject_all(FaultAction::BlackHole);
    let run = manager.shell_run(&["echo never"]).await;
    let cache = tempfile::tempdir().unwrap();
    let child = runner_process(&proxy.url, &run.id, "r-unreachable", cache.path());
    // Registering hangs on the black hole until the signal.
    until_sync("the runner to try registering", WAIT, || {
        proxy.count("/runners") > 0
    })
    .await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "{output}");
    assert!(output.contains("shut down"), "{output}");
    assert_eq!(
        manager.client().get_run(&run.id).await.unwrap().status,
        RunStatus::Queued
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_a_turn_whose_manager_went_silent() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let proxy = FaultProxy::start(&manager.url()).await;
    let run = manager.shell_run(&["echo started; sleep 60"]).await;
    let cache = tempfile::tempdir().unwrap();
    let child = runner_process(&proxy.url, &run.id, "r-silent-cli", cache.path());
    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    proxy.inject_all(FaultAction::BlackHole);
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "{output}");
    assert!(
        containers_with_label(&format!("dev.aac-host.run={}", run.id))
            .await
            .is_empty(),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_process_stops_on_sigterm_and_sigint() {
    for name in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(aac_host_binary())
            .args(["manager", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(dir.path().join("m.redb"))
            .env("AAC_MANAGER_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client =
            aac_host::manager::ManagerClient::new(format!("http://127.0.0.1:{port}"), TOKEN)
                .unwrap();
        aac_tests::wait::manager_answers(&client).await;
        // A long-poll in flight must not hold the shutdown.
        let run = client
            .create_run(aac_host::manager::protocol::CreateRun {
                id: None,
                backend: "shell".into(),
                bundle: None,
                config: serde_json::Value::Null,
                max_attempts: None,
                require_labels: Default::default(),
            })
            .await
            .unwrap();
        let poll = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .poll_commands(&run.id, 0, Duration::from_secs(60))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal(&child, name);
        let (code, output) = wait(child).await;
        assert_eq!(code, 0, "SIG{name}: {output}");
        assert!(output.contains("shutting down"), "{output}");
        let _ = poll.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_stops_on_sigterm_and_leaves_no_container() {
    let runner = format!("sigterm-run-{}", std::process::id());
    let workspace = tempfile::tempdir().unwrap();
    let child = Command::new(aac_host_binary())
        .args(["run", "--runner-id", &runner, "--plugin"])
        .arg(plugin("shell"))
        .arg("--workspace")
        .arg(workspace.path())
        .arg("echo running; sleep 120")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let label = format!("dev.aac-host.runner={runner}");
    until("the turn's container", WAIT, || async {
        !containers_with_label(&label).await.is_empty()
    })
    .await;
    // Give the turn a moment to start inside its container.
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "cancelled: {output}");
    assert!(
        containers_with_label(&label).await.is_empty(),
        "the turn's container is removed: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_gives_its_runs_back_and_exits_130_after_two_signals() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let run = manager.shell_run(&["echo started; sleep 60"]).await;
    let cache = tempfile::tempdir().unwrap();
    let child = Command::new(aac_host_binary())
        .args(["--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", &manager.url(), "--max-runs", "1"])
        .args(["--runner-id", "pool-signals", "--lease", "5s", "--json"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "{output}");
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(
        stored.status,
        RunStatus::Queued,
        "released, not ended: {output}"
    );
    assert_eq!(stored.attempts[0].end, Some(AttemptEnd::Released));
    assert!(
        containers_with_label(&format!("dev.aac-host.run={}", run.id))
            .await
            .is_empty()
    );
}
