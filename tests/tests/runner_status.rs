//! A pool-mode runner's status listener (`--status-listen`): live at once, ready once registered
//! and while the manager answers, with the runs it holds; not ready while the manager is gone.

use std::process::{Command, Stdio};
use std::time::Duration;

use aac_tests::child::{signal, wait};
use aac_tests::runs::{TOKEN, TestManager, is_line, wait_for_event};
use aac_tests::{aac_host_binary, containers_of_run, plugin};

async fn get(url: &str) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or_default()))
}

/// Polls `url` until `accept` takes its answer (a bounded number of times, not a timing claim).
async fn poll_until(
    url: &str,
    what: &str,
    accept: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = None;
    for _ in 0..600 {
        if let Some((status, body)) = get(url).await {
            if accept(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never showed {what}; last answer: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_listener_reports_readiness_and_held_runs() {
    let mut manager = TestManager::start().await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let port = aac_tests::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(aac_host_binary())
        .args(["--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", &manager.url(), "--max-runs", "2"])
        .args(["--runner-id", "status-runner", "--lease", "6s", "--json"])
        .args(["--status-listen", &format!("127.0.0.1:{port}")])
        .args(["--label", "zone=test-a"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let ready = poll_until(&format!("{base}/readyz"), "ready", |s, _| s == 200).await;
    assert_eq!(ready["registered"], true, "{ready}");
    assert_eq!(ready["max_runs"], 2, "{ready}");
    assert_eq!(ready["runs"], serde_json::json!([]), "{ready}");
    let (status, live) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!((status, &live["status"]), (200, &serde_json::json!("ok")));

    // Queued first, for a zone this runner is not in: passed over, never claimed.
    let elsewhere = client
        .create_run(aac_host::manager::protocol::CreateRun {
            backend: "shell".into(),
            require_labels: [("zone".to_string(), "test-b".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let run = manager.shell_run(&["echo started; sleep 60"]).await;
    let started = wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    // Events carry the runner's emit time and the manager's receive time, no earlier.
    let (emitted, received) = (
        started.emitted_at_ms.unwrap(),
        started.received_at_ms.unwrap(),
    );
    assert!(
        emitted > 1_600_000_000_000 && received + 1000 >= emitted,
        "{started:?}"
    );
    let holding = poll_until(&format!("{base}/readyz"), "the held run", |s, b| {
        s == 200 && b["runs"].to_string().contains(&run.id)
    })
    .await;
    assert_eq!(holding["runs"][0]["backend"], "shell", "{holding}");
    let fleet = client.list_runners().await.unwrap();
    let me = fleet
        .iter()
        .find(|r| r.runner.id == "status-runner")
        .unwrap();
    assert_eq!(me.runner.labels["zone"], "test-a", "{me:?}");
    assert_eq!(me.runs_held, vec![run.id.clone()], "{me:?}");
    assert_eq!(
        client.get_run(&elsewhere.id).await.unwrap().status,
        aac_host::manager::protocol::RunStatus::Queued
    );

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "aac_runner_runs_held 1",
        "aac_runner_claims_total{outcome=\"claimed\"} 1",
        "aac_runner_sandbox_starts_total{outcome=\"cold\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "no `{series}`:\n{metrics}"
        );
    }
    assert!(
        metrics.lines().any(
            |l| l.starts_with("aac_runner_time_to_first_event_seconds_count{") && l.ends_with(" 1")
        ),
        "{metrics}"
    );

    // Heartbeats now fail: the runner is alive but not ready, and says why.
    manager.stop().await;
    let down = poll_until(&format!("{base}/readyz"), "not ready", |s, _| s == 503).await;
    assert_eq!(down["ready"], false, "{down}");
    assert_eq!(down["manager_reachable"], false, "{down}");
    assert!(down["last_error"].is_string(), "{down}");
    assert_eq!(get(&format!("{base}/healthz")).await.unwrap().0, 200);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aac_runner_heartbeat_failures_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 1), "{metrics}");

    manager.restart().await;
    poll_until(&format!("{base}/readyz"), "ready again", |s, _| s == 200).await;

    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM");
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "{output}");
    assert!(
        get(&format!("{base}/healthz")).await.is_none(),
        "the listener closed"
    );
    assert_eq!(containers_of_run(&run.id).await, 0);
}
