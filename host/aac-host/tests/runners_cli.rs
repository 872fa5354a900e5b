//! `aac-host runners list` and `aac-host runs create --require KEY=VALUE` against the real
//! standalone manager.

use std::process::Stdio;
use std::time::Duration;

use aac_host::manager::client::ManagerClient;
use aac_host::manager::protocol::RegisterRunner;

const TOKEN: &str = "runners-cli-token";

async fn cli(url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(args)
        .env("AAC_MANAGER_URL", url)
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .output()
        .await
        .unwrap()
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn runners_list_shows_the_fleet_and_runs_may_require_labels() {
    let dir = tempfile::tempdir().unwrap();
    let port = aac_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut manager = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("m.redb"))
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = ManagerClient::new(&url, TOKEN).unwrap();
    for _ in 0..200 {
        if client.list_runners().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .register_runner(RegisterRunner {
            id: Some("rnr-a".into()),
            name: "builder-a".into(),
            labels: [("gpu".to_string(), "a100".to_string())].into(),
        })
        .await
        .unwrap();

    let created = json_of(
        &cli(
            &url,
            &[
                "runs",
                "create",
                "shell",
                "--require",
                "gpu=a100",
                "--require",
                "zone=eu",
            ],
        )
        .await,
    );
    assert_eq!(
        created["require_labels"],
        serde_json::json!({"gpu": "a100", "zone": "eu"})
    );
    let run_id = created["id"].as_str().unwrap();
    let claimed = client
        .claim_next("rnr-a", Duration::from_secs(30), None)
        .await
        .unwrap();
    assert!(claimed.is_none(), "rnr-a lacks zone=eu");

    let listed = json_of(&cli(&url, &["runners", "list"]).await);
    let runner = &listed["runners"][0];
    assert_eq!(runner["id"], "rnr-a");
    assert_eq!(runner["name"], "builder-a");
    assert_eq!(runner["labels"]["gpu"], "a100");
    assert_eq!(runner["runs_held"], serde_json::json!([]));
    assert!(runner["last_seen_ms"].as_u64().is_some(), "{runner}");
    assert_eq!(
        client.get_run(run_id).await.unwrap().status,
        aac_host::manager::protocol::RunStatus::Queued
    );

    let bad = cli(&url, &["runs", "create", "shell", "--require", "gpu"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`gpu` is not KEY=VALUE"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    manager.start_kill().unwrap();
    manager.wait().await.unwrap();
}
