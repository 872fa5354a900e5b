//! The runner's life against a real embedded manager over HTTP, with the shell plugin in real
//! containers: session reuse, idle timeout, a manager restart, pool mode with warm sandboxes, event
//! bounds. The lifecycle cases with no sandbox logic (claim conflicts, tokens, heartbeats, lost
//! leases, cancellation) run without Docker in host/aac-host/tests/runner_lifecycle.rs.

use std::time::Duration;

use aac_host::manager::protocol::{CommandStatus, EnqueueCommand, RunStatus};
use aac_host::outcome::TerminalStatus;
use aac_host::runner::RunMode;
use aac_tests::runs::{
    TestManager, assert_contiguous_events, is_line, runner_config, shell_runner, wait_for_event,
};
use aac_tests::{containers_of_run, test_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_a_run_share_one_session_and_end_completed() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    // /tmp is the container's own tmpfs: the second command sees the first one's file only if
    // both ran in the same sandbox.
    let run = manager
        .shell_run(&[
            "echo one > /tmp/marker; echo first",
            "cat /tmp/marker; echo second",
        ])
        .await;
    let runner = shell_runner(client.clone(), &host, runner_config("r-reuse", root.path())).await;
    let report = runner.run(&run.id).await.unwrap();

    assert_eq!(report.status(), TerminalStatus::Completed, "{report:?}");
    assert!(report.reported);
    assert_eq!(report.commands.len(), 2);
    let lines = assert_contiguous_events(&client, &run.id).await;
    assert_eq!(lines, ["first", "one", "second"]);
    for id in ["c1", "c2"] {
        let command = client.get_command(&run.id, id).await.unwrap();
        assert_eq!(command.status, CommandStatus::Completed);
    }
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Completed);
    assert_eq!(
        containers_of_run(&run.id).await,
        0,
        "the sandbox is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_run_waits_for_commands_then_ends_after_the_idle_timeout() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let run = manager.shell_run(&["echo early"]).await;
    let mut config = runner_config("r-idle", root.path());
    config.mode = RunMode::UntilIdle;
    config.idle_timeout = Some(Duration::from_secs(2));
    let runner = shell_runner(client.clone(), &host, config).await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&client, &run.id, |e| is_line(e, "early")).await;
    client
        .enqueue(
            &run.id,
            EnqueueCommand {
                id: Some("late".into()),
                prompt: "echo late".into(),
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    let report = work.await.unwrap().unwrap();
    assert_eq!(report.status(), TerminalStatus::Completed);
    assert_eq!(
        report.commands.len(),
        2,
        "the late command ran in the same run"
    );
    assert!(
        report.outcome.message.is_none(),
        "the run ends as its last command did"
    );
    let lines = assert_contiguous_events(&client, &run.id).await;
    assert_eq!(lines, ["early", "late"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_restart_mid_run_loses_and_duplicates_no_event() {
    let mut manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let run = manager
        .shell_run(&["i=1; while [ $i -le 40 ]; do echo line$i; i=$((i+1)); sleep 0.05; done"])
        .await;
    let mut config = runner_config("r-restart", root.path());
    config.lease = Duration::from_secs(10);
    let runner = shell_runner(client.clone(), &host, config).await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&client, &run.id, |e| is_line(e, "line5")).await;
    manager.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    manager.restart().await;

    let report = work.await.unwrap().unwrap();
    assert_eq!(report.status(), TerminalStatus::Completed, "{report:?}");
    assert!(
        report.reported,
        "the terminal status arrived after recovery"
    );
    let lines = assert_contiguous_events(&client, &run.id).await;
    let expected: Vec<String> = (1..=40).map(|i| format!("line{i}")).collect();
    assert_eq!(lines, expected, "every line once, in order");
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_works_on_every_queued_run() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(manager.shell_run(&[&format!("echo run{i}")]).await.id);
    }
    let runner = std::sync::Arc::new(
        shell_runner(client.clone(), &host, runner_config("r-pool", root.path())).await,
    );
    let report = runner.serve(3).await.unwrap();
    assert_eq!(report.runs.len(), 4, "{report:?}");
    for (i, run) in runs.iter().enumerate() {
        let stored = client.get_run(run).await.unwrap();
        assert_eq!(stored.status, RunStatus::Completed);
        assert_eq!(stored.runner_id.as_deref(), Some("r-pool"));
        let lines = assert_contiguous_events(&client, run).await;
        assert_eq!(lines, [format!("run{i}")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_hands_runs_warm_sandboxes_and_removes_the_pool_at_the_end() {
    use aac_host::config::HostConfig;
    use aac_host::runner::{Profiles, Runner};
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let toml = format!(
        "[runtimes.shell]\nplugin = {:?}\ndefault_version = \"1\"\nversions.\"1\".image = \"aac/busybox:latest\"\nwarm_pool = 2\n",
        aac_tests::plugin("shell")
    );
    let config = HostConfig::parse(&toml, std::path::Path::new("aac.toml")).unwrap();
    let runs = [
        manager.shell_run(&["echo a"]).await.id,
        manager.shell_run(&["echo b"]).await.id,
    ];
    let driver = aac_tests::docker().await.with_runner_id("r-warm");
    let runner = std::sync::Arc::new(Runner::new(
        client.clone(),
        host.clone(),
        std::sync::Arc::new(driver),
        Profiles::Config(config),
        runner_config("r-warm", root.path()),
    ));
    runner.register().await.unwrap();
    runner.prewarm(true).await.unwrap();
    let report = runner.serve(2).await.unwrap();

    assert_eq!(report.runs.len(), 2, "{report:?}");
    for run in &report.runs {
        assert_eq!(run.status(), TerminalStatus::Completed, "{run:?}");
        assert!(
            run.warm_sandbox,
            "run {} started on a warm sandbox",
            run.run_id
        );
    }
    for run in &runs {
        assert_eq!(
            client.get_run(run).await.unwrap().status,
            RunStatus::Completed
        );
    }
    let left = aac_tests::containers_with_label("dev.aac-host.runner=r-warm").await;
    assert!(left.is_empty(), "pooled sandboxes are removed: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_buffer_bound_are_dropped_and_counted() {
    use aac_host::manager::protocol::RegisterRunner;
    use aac_host::outcome::TurnEvent;
    use aac_host::runner::BatchPolicy;
    use aac_host::runner::events::EventShipper;
    let mut manager = TestManager::start().await;
    let client = manager.client();
    let run = manager.shell_run(&[]).await;
    client
        .register_runner(RegisterRunner {
            id: Some("r-drop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let lease = client
        .claim(&run.id, "r-drop", Duration::from_secs(60))
        .await
        .unwrap();
    // The manager is away while 20 events arrive; the runner may hold only 5.
    manager.stop().await;
    let policy = BatchPolicy {
        max_buffered: 5,
        ..BatchPolicy::default()
    };
    let (events, shipper) = EventShipper::start(&client, run.id.clone(), lease.lease_token, policy);
    for seq in 1..=20 {
        events
            .send(TurnEvent {
                seq,
                command_id: "c1".into(),
                kind: "output.stdout".into(),
                payload: serde_json::json!({ "text": seq.to_string() }),
                attempt_id: None,
                emitted_at_ms: None,
                received_at_ms: None,
            })
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    manager.restart().await;
    let stats = shipper.flush().await.unwrap();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.sent + stats.dropped, 20, "{stats:?}");
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(
        stored.dropped_events, stats.dropped,
        "the drop count reached the manager"
    );
    assert_eq!(
        client.events(&run.id, 0).await.unwrap().len() as u64,
        stats.sent
    );
}
