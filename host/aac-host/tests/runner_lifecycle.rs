//! A run's lifecycle as the runner lives it — claim conflicts, a wrong token, the first heartbeat,
//! a lost lease, cancellation, a manager that answers garbage — against the real manager over
//! HTTP and the real shell plugin, on a sandbox driver without Docker (`HostProcessDriver`: plain
//! host processes). None of these has sandbox logic, so none needs a Docker engine; the Docker
//! end-to-end tests of the runner stay in tests/tests/runner.rs.

use std::sync::Arc;
use std::time::Duration;

use aac_host::manager::ManagerClient;
use aac_host::manager::protocol::{CommandStatus, RegisterRunner, RunStatus};
use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_host::runner::{Runner, RunnerConfig};
use aac_tests::fault_proxy::{FaultAction, FaultProxy};
use aac_tests::host_driver::HostProcessDriver;
use aac_tests::runs::{
    TOKEN, TestManager, assert_contiguous_events, is_line, runner_config, shell_runner_on,
    unregistered_shell_runner_on, wait_for_event,
};
use aac_tests::test_host;
use http::Method;

/// A registered runner of the shell plugin on `driver`.
async fn runner_on(
    client: ManagerClient,
    driver: &HostProcessDriver,
    config: RunnerConfig,
) -> Runner {
    shell_runner_on(client, &test_host(None), config, Arc::new(driver.clone())).await
}

/// Whether a process with this pid still exists.
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the pid exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The pid a turn wrote to `pid` in its workspace.
fn pid_in(workspace: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(workspace.join("pid")).expect("the turn wrote its pid");
    text.trim().parse().expect("a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_conflict_returns_at_once_without_work() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    client
        .register_runner(RegisterRunner {
            id: Some("someone-else".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .claim(&run.id, "someone-else", Duration::from_secs(60))
        .await
        .unwrap();

    let driver = HostProcessDriver::new();
    let runner = runner_on(
        client.clone(),
        &driver,
        runner_config("r-late", root.path()),
    )
    .await;
    let err = runner.run(&run.id).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let command = client.get_command(&run.id, "c1").await.unwrap();
    assert_eq!(command.status, CommandStatus::Queued, "nothing was acked");
    assert_eq!(driver.opened(), 0, "no sandbox was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_racing_for_one_run_exactly_one_works() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo once"]).await;
    let driver = HostProcessDriver::new();
    let a = runner_on(client.clone(), &driver, runner_config("r-a", root.path())).await;
    let b = runner_on(client.clone(), &driver, runner_config("r-b", root.path())).await;
    let (ra, rb) = tokio::join!(a.run(&run.id), b.run(&run.id));
    let (worked, refused): (Vec<_>, Vec<_>) = [ra, rb].into_iter().partition(Result::is_ok);
    assert_eq!(worked.len(), 1, "exactly one runner works");
    assert!(refused[0].as_ref().unwrap_err().is_conflict());
    let lines = assert_contiguous_events(&client, &run.id).await;
    assert_eq!(lines, ["once"], "the command ran once");
    assert_eq!(driver.opened(), 1, "one sandbox, for the runner that won");
    assert_eq!(driver.alive_of_run(&run.id), 0, "and it was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_before_any_work() {
    let manager = TestManager::start().await;
    let root = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    let client = ManagerClient::new(manager.url(), "wrong").unwrap();
    let driver = HostProcessDriver::new();
    let config = runner_config("r-401", root.path());
    let runner =
        unregistered_shell_runner_on(client, &test_host(None), config, Arc::new(driver.clone()));
    let err = runner.register().await.unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    let err = runner.run(&run.id).await.unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    let stored = manager.client().get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Queued, "no effect on the run");
    assert_eq!(driver.opened(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_heartbeat_means_no_work() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    proxy.inject(Method::POST, "/heartbeat", FaultAction::Status(503));
    let client = ManagerClient::new(&proxy.url, TOKEN).unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    let mut config = runner_config("r-nobeat", root.path());
    config.lease = Duration::from_secs(2);
    let driver = HostProcessDriver::new();
    let runner = runner_on(client, &driver, config).await;

    let err = runner.run(&run.id).await.unwrap_err();
    assert!(err.to_string().contains("first heartbeat"), "{err}");
    assert_eq!(proxy.count("/ack"), 0, "no command was acked");
    assert_eq!(proxy.count("/commands"), 0, "no command was even polled");
    assert_eq!(driver.opened(), 0, "no sandbox was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_heartbeats_mid_turn_stops_the_turn_and_gives_the_run_back() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    let client = ManagerClient::new(&proxy.url, TOKEN).unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = manager
        .shell_run(&["echo $$ > pid; echo started; sleep 60"])
        .await;
    let mut config = runner_config("r-lost", root.path());
    config.lease = Duration::from_secs(2);
    let driver = HostProcessDriver::new();
    let runner = runner_on(client, &driver, config).await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&manager.client(), &run.id, |e| is_line(e, "started")).await;
    let turn = pid_in(&root.path().join(&run.id).join("workspace"));
    assert!(process_exists(turn), "the turn runs");
    proxy.inject(Method::POST, "/heartbeat", FaultAction::Status(503));
    let report = work.await.unwrap().unwrap();
    let why = report.released.clone().expect("released");
    assert!(why.contains("lease"), "{why}");
    assert!(
        report.commands.is_empty(),
        "no status for a turn the host stopped"
    );
    let stored = manager.client().get_run(&run.id).await.unwrap();
    assert_eq!(
        stored.status,
        RunStatus::Queued,
        "the run goes to its next attempt"
    );
    let command = manager.client().get_command(&run.id, "c1").await;
    assert_eq!(command.unwrap().status, CommandStatus::Queued);
    assert_eq!(driver.alive_of_run(&run.id), 0, "the sandbox is removed");
    assert!(!process_exists(turn), "the turn's process was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_before_it_starts_is_not_worked_on() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    let cancelled = client.cancel_run(&run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);

    let driver = HostProcessDriver::new();
    let runner = runner_on(client.clone(), &driver, runner_config("r-pre", root.path())).await;
    let err = runner.run(&run.id).await.unwrap_err();
    assert!(err.to_string().contains("run-terminal"), "{err}");
    let command = client.get_command(&run.id, "c1").await.unwrap();
    assert_eq!(command.status, CommandStatus::Cancelled);
    assert_eq!(driver.opened(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_mid_turn_kills_the_turn_and_ends_the_run_cancelled() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let run = manager
        .shell_run(&["echo $$ > pid; echo started; sleep 60", "echo never"])
        .await;
    let driver = HostProcessDriver::new();
    let runner = runner_on(
        client.clone(),
        &driver,
        runner_config("r-cancel", root.path()),
    )
    .await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    let turn = pid_in(&root.path().join(&run.id).join("workspace"));
    client.cancel_run(&run.id).await.unwrap();
    let report = work.await.unwrap().unwrap();
    assert_eq!(report.status(), TerminalStatus::Cancelled, "{report:?}");
    assert_eq!(report.commands.len(), 1, "the second command never ran");
    assert_eq!(driver.execs(), 1, "no process was started for it");
    assert_eq!(
        client.get_command(&run.id, "c1").await.unwrap().status,
        CommandStatus::Cancelled
    );
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Cancelled
    );
    assert_eq!(driver.alive_of_run(&run.id), 0);
    assert!(!process_exists(turn), "the turn's process was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_command_lets_the_run_go_on() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let run = manager
        .shell_run(&["echo started; sleep 60", "echo next"])
        .await;
    let driver = HostProcessDriver::new();
    let runner = runner_on(client.clone(), &driver, runner_config("r-cmd", root.path())).await;
    let run_id = run.id.clone();
    let work = tokio::spawn(async move { runner.run(&run_id).await });

    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    client.cancel_command(&run.id, "c1").await.unwrap();
    let report = work.await.unwrap().unwrap();
    assert_eq!(report.commands[0].1.status, TerminalStatus::Cancelled);
    assert_eq!(report.commands[1].1.status, TerminalStatus::Completed);
    assert_eq!(report.status(), TerminalStatus::Completed);
    let lines = assert_contiguous_events(&client, &run.id).await;
    assert_eq!(lines, ["started", "next"]);
    assert_eq!(driver.opened(), 1, "both commands ran in one session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_manager_reply_fails_the_run_as_schema_invalid() {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    proxy.inject(
        Method::GET,
        "/commands",
        FaultAction::Garbage(r#"{"commands": "not a list"}"#),
    );
    let client = ManagerClient::new(&proxy.url, TOKEN).unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    let driver = HostProcessDriver::new();
    let runner = runner_on(client, &driver, runner_config("r-garbage", root.path())).await;

    let report = runner.run(&run.id).await.unwrap();
    assert_eq!(report.failure_kind(), Some(FailureKind::SchemaInvalid));
    let message = report.outcome.message.clone().unwrap_or_default();
    assert!(
        message.contains("GET /v1/runs/") && message.contains("CommandBatch"),
        "the message names the endpoint and the expected shape: {message}"
    );
    let stored = manager.client().get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Failed);
    assert_eq!(stored.failure_kind, Some(FailureKind::SchemaInvalid));
    assert_eq!(driver.opened(), 0, "no command arrived, so no sandbox");
}
