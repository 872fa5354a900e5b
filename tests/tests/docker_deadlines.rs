//! Every Docker call has a deadline: a container whose engine calls hang (held by a proxy between
//! the real `aac-host` and the real dockerd) fails its own run as `sandbox-lost`, naming the call
//! and the container, while the other run of the same host completes; a signal still stops the host.

use std::process::{Command, Stdio};
use std::time::Duration;

use aac_host::manager::protocol::RunStatus;
use aac_host::outcome::FailureKind;
use aac_tests::docker_proxy::DockerProxy;
use aac_tests::runs::{TOKEN, TestManager};
use aac_tests::{aac_host_binary, containers_of_run, plugin};

/// Far above every deadline involved: only a hang reaches it.
const HANG_GUARD: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_exec_calls_hang_fails_its_run_and_the_other_run_completes() {
    let proxy = DockerProxy::start().await;
    let manager = TestManager::start().await;
    let client = manager.client();
    let first = manager.shell_run(&["echo one"]).await;
    let second = manager.shell_run(&["echo two"]).await;
    proxy.hang_first_container("POST", "/exec");
    let cache = tempfile::tempdir().unwrap();
    let child = Command::new(aac_host_binary())
        .args(["--plugin"])
        .arg(plugin("shell"))
        .args([
            "--manager-url",
            &manager.url(),
            "--max-runs",
            "2",
            "--one-shot",
        ])
        .args(["--runner-id", "wedged-exec", "--lease", "5s", "--json"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .env("DOCKER_HOST", &proxy.docker_host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(
        HANG_GUARD,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the host hung behind one wedged container")
    .unwrap()
    .unwrap();
    let code = output.status.code();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Pool mode says a claimed run could not be worked on.
    assert_eq!(code, Some(2), "{output}");
    let wedged = proxy.wedged_container().expect("a request was held");
    assert!(!proxy.held().is_empty());

    let runs = [
        client.get_run(&first.id).await.unwrap(),
        client.get_run(&second.id).await.unwrap(),
    ];
    let failed: Vec<_> = runs
        .iter()
        .filter(|run| run.status == RunStatus::Failed)
        .collect();
    let completed: Vec<_> = runs
        .iter()
        .filter(|run| run.status == RunStatus::Completed)
        .collect();
    assert_eq!(failed.len(), 1, "one run fails: {runs:?}\n{output}");
    assert_eq!(
        completed.len(),
        1,
        "the other completes: {runs:?}\n{output}"
    );
    let failed = failed[0];
    assert_eq!(
        failed.failure_kind,
        Some(FailureKind::SandboxLost),
        "{failed:?}"
    );
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.contains("exec create") && message.contains(&wedged),
        "the message names the call and the container: {message}"
    );
    let events = client.events(&completed[0].id, 0).await.unwrap();
    let text = if completed[0].id == first.id {
        "one"
    } else {
        "two"
    };
    assert!(
        events
            .iter()
            .any(|e| e.kind.starts_with("output.") && e.payload["text"] == text),
        "the healthy run's output: {events:?}"
    );
    for run in [&first.id, &second.id] {
        assert_eq!(
            containers_of_run(run).await,
            0,
            "run {run} left a container"
        );
    }
}

/// SIGTERM while the host waits on a wedged container's call: `aac-host run` still stops, within
/// the call's deadline or its own abort bound, and leaves no container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_aac_host_run_while_a_docker_call_hangs() {
    let proxy = DockerProxy::start().await;
    proxy.hang_first_container("POST", "/exec");
    let runner = format!("wedged-signal-{}", std::process::id());
    let child = Command::new(aac_host_binary())
        .args(["run", "--json", "--plugin"])
        .arg(plugin("shell"))
        .args(["--runner-id", &runner, "echo never"])
        .env("DOCKER_HOST", &proxy.docker_host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the host is held by the wedged call, then signal it.
    let held = async {
        while proxy.held().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(HANG_GUARD, held)
        .await
        .expect("the host never reached the wedged call");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(
        HANG_GUARD,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("a signalled host hung behind a wedged container")
    .unwrap()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        matches!(output.status.code(), Some(1 | 130)),
        "failed or cancelled: {text}"
    );
    assert!(
        !text.contains(r#""text":"never""#),
        "the turn never ran: {text}"
    );
    let left = aac_tests::containers_with_label(&format!("dev.aac-host.runner={runner}")).await;
    assert!(left.is_empty(), "containers left: {left:?}\n{text}");
}
