//! Runner mode of the `aac-host` binary against a real manager: SIGTERM drains and gives the run
//! back, a second SIGTERM kills the turn and gives the run back too, a claim conflict exits at once
//! with its own code.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aac_host::manager::protocol::{AttemptEnd, CommandStatus, RegisterRunner, RunStatus};
use aac_tests::child::{signal, wait};
use aac_tests::runs::{TOKEN, TestManager, is_line, wait_for_event};
use aac_tests::{aac_host_binary, containers_of_run, plugin};

fn runner_process(
    manager: &TestManager,
    run: &str,
    runner_id: &str,
    cache: &std::path::Path,
) -> Child {
    Command::new(aac_host_binary())
        .args(["--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", &manager.url(), "--run-id", run])
        .args([
            "--runner-id",
            runner_id,
            "--one-shot",
            "--lease",
            "5s",
            "--json",
        ])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting aac-host")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sigterm_finishes_the_turn_then_gives_the_run_back() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let run = manager
        .shell_run(&["echo started; sleep 2; echo finished", "echo never"])
        .await;
    let child = runner_process(&manager, &run.id, "cli-drain", cache.path());

    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 5, "released: {output}");
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(
        stored.status,
        RunStatus::Queued,
        "no status is invented: {output}"
    );
    assert_eq!(stored.attempts[0].end, Some(AttemptEnd::Released));
    assert_eq!(
        client.get_command(&run.id, "c1").await.unwrap().status,
        CommandStatus::Completed
    );
    let events = client.events(&run.id, 0).await.unwrap();
    assert!(
        events.iter().any(|e| is_line(e, "finished")),
        "the turn ran to its end"
    );
    assert_eq!(
        client.get_command(&run.id, "c2").await.unwrap().status,
        CommandStatus::Queued,
        "no new command starts while draining; the next attempt takes it"
    );
    assert_eq!(containers_of_run(&run.id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_an_idle_run_back_at_once() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&[]).await;
    let child = Command::new(aac_host_binary())
        .args(["--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", &manager.url(), "--run-id", &run.id])
        .args(["--runner-id", "cli-idle", "--lease", "5s", "--json"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    aac_tests::wait::until("the run to be running", Duration::from_secs(60), || async {
        client.get_run(&run.id).await.unwrap().status == RunStatus::Running
    })
    .await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 5, "{output}");
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(
        stored.status,
        RunStatus::Queued,
        "a live session is not completed by a drain"
    );
    assert_eq!(stored.attempts[0].end, Some(AttemptEnd::Released));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_kills_the_turn_and_gives_the_run_back() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo started; sleep 60"]).await;
    let child = runner_process(&manager, &run.id, "cli-abort", cache.path());

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
        "a shutdown is not a user's cancel"
    );
    assert_eq!(stored.attempts[0].end, Some(AttemptEnd::Released));
    assert_eq!(
        client.get_command(&run.id, "c1").await.unwrap().status,
        CommandStatus::Queued,
        "nothing had finished, so the next attempt runs c1 again"
    );
    assert_eq!(containers_of_run(&run.id).await, 0);
}

/// `--drain-timeout`: one SIGTERM (as systemd or Kubernetes send) and a turn that does not finish
/// within the timeout is cancelled as by a second signal; the run goes back to the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_its_timeout_cancels_the_turn_like_a_second_sigterm() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo started; sleep 120"]).await;
    let child = Command::new(aac_host_binary())
        .args(["runner", "--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", &manager.url(), "--run-id", &run.id])
        .args([
            "--runner-id",
            "cli-drain-timeout",
            "--lease",
            "5s",
            "--json",
        ])
        .args(["--drain-timeout", "2s"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "{output}");
    assert!(output.contains("drain timeout passed"), "{output}");
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Queued, "{output}");
    assert_eq!(stored.attempts[0].end, Some(AttemptEnd::Released));
    assert_eq!(containers_of_run(&run.id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_conflict_exits_with_code_4_at_once() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    client
        .register_runner(RegisterRunner {
            id: Some("holder".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .claim(&run.id, "holder", Duration::from_secs(60))
        .await
        .unwrap();

    let child = runner_process(&manager, &run.id, "cli-late", cache.path());
    let (code, output) = wait(child).await;
    assert_eq!(code, 4, "{output}");
    assert!(output.contains("lease-conflict"), "{output}");
    assert_eq!(
        client.get_command(&run.id, "c1").await.unwrap().status,
        CommandStatus::Queued
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plugin_file_fails_before_any_run_is_claimed() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    let bad = cache.path().join("not-a-plugin.wasm");
    std::fs::write(&bad, b"definitely not wasm").unwrap();
    let child = Command::new(aac_host_binary())
        .arg("--plugin")
        .arg(&bad)
        .args([
            "--manager-url",
            &manager.url(),
            "--run-id",
            &run.id,
            "--json",
        ])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, output) = wait(child).await;
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("not-a-plugin.wasm"),
        "names the file: {output}"
    );
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Queued, "the run was not claimed");
    assert!(stored.runner_id.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_command_fails_the_run_even_when_a_later_one_completes() {
    let manager = TestManager::start().await;
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo one; exit 3", "echo two"]).await;
    let child = runner_process(&manager, &run.id, "cli-rule", cache.path());
    let (code, output) = wait(child).await;
    assert_eq!(code, 1, "the run failed, so the runner says so: {output}");

    let shown = Command::new(aac_host_binary())
        .args(["runs", "--manager-url", &manager.url(), "--token", TOKEN])
        .args(["get", &run.id])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "failed", "{shown}");
    assert_eq!(shown["failure_kind"], "agent-error", "{shown}");
    assert!(shown["message"].as_str().unwrap().contains("c1"), "{shown}");
    let commands = shown["commands"].as_array().unwrap();
    assert_eq!(commands[0]["id"], "c1");
    assert_eq!(commands[0]["status"], "failed");
    assert_eq!(commands[0]["failure_kind"], "agent-error");
    assert_eq!(commands[1]["status"], "completed");
    assert_eq!(shown["attempts"][0]["runner_id"], "cli-rule");
    assert_eq!(shown["attempts"][0]["end"], "finished");
}
