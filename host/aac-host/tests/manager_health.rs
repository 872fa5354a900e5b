//! The standalone manager answers its health probes without a token, and only them.

use std::process::Stdio;
use std::time::Duration;

const TOKEN: &str = "health-test-token";

async fn get(url: &str) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or_default()))
}

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_token_and_the_api_still_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = aac_tests::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("manager.redb"))
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut live = None;
    for _ in 0..200 {
        live = get(&format!("{base}/healthz")).await;
        if live.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = live.expect("the manager never answered /healthz");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let client = aac_host::manager::client::ManagerClient::new(&base, TOKEN).unwrap();
    client
        .create_run(aac_host::manager::protocol::CreateRun::new("shell"))
        .await
        .unwrap();
    let (status, body) = get(&format!("{base}/readyz")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["runs"], 1, "the probe read the store: {body}");

    // Metrics: Prometheus text, no token; the store's counts and the requests so far.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "aac_manager_runs{status=\"queued\"} 1",
        "aac_manager_runs{status=\"running\"} 0",
        "aac_manager_queue_depth 1",
        "aac_manager_events_stored_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(
            "aac_manager_request_duration_seconds_count{method=\"POST\",route=\"/v1/runs\",status=\"201\"} 1"
        ),
        "{metrics}"
    );
    let age = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aac_manager_oldest_queued_age_seconds "))
        .expect("the oldest queued age")
        .parse::<f64>()
        .unwrap();
    assert!(age >= 0.0, "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    let (status, body) = get(&format!("{base}/v1/runs")).await.unwrap();
    assert_eq!(status, 401, "the protocol still needs the token: {body}");
    let (status, _) = get(&format!("{base}/metricz")).await.unwrap();
    assert_eq!(status, 401, "only the probes are open");

    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
