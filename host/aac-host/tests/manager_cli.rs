//! `aac-host manager` serves the protocol from a store file, and what it accepted survives a
//! restart of the process.

use std::process::Stdio;

use aac_host::manager::client::ManagerClient;
use aac_host::manager::protocol::CreateRun;
use aac_tests::wait::manager_answers;

struct ManagerProcess(tokio::process::Child);

impl ManagerProcess {
    fn start(port: u16, db: &std::path::Path) -> Self {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
            .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(db)
            .env("AAC_MANAGER_TOKEN", "cli-test-token")
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self(child)
    }

    async fn stop(mut self) {
        self.0.start_kill().unwrap();
        self.0.wait().await.unwrap();
    }
}

#[tokio::test]
async fn the_standalone_manager_keeps_runs_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("manager.redb");
    let port = aac_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let client = ManagerClient::new(&url, "cli-test-token").unwrap();

    let manager = ManagerProcess::start(port, &db);
    manager_answers(&client).await;
    let run = client.create_run(CreateRun::new("shell")).await.unwrap();
    let wrong = ManagerClient::new(&url, "wrong").unwrap();
    assert!(
        wrong.list_runs(None).await.is_err(),
        "a wrong token must be refused"
    );
    manager.stop().await;

    let manager = ManagerProcess::start(port, &db);
    manager_answers(&client).await;
    let runs = client.list_runs(None).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [run.id]
    );
    manager.stop().await;
}

async fn runs_cli(url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["runs", "--manager-url", url])
        .args(args)
        .env("AAC_MANAGER_TOKEN", "cli-test-token")
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
async fn the_runs_commands_drive_a_manager() {
    let dir = tempfile::tempdir().unwrap();
    let port = aac_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let manager = ManagerProcess::start(port, &dir.path().join("manager.redb"));
    manager_answers(&ManagerClient::new(&url, "cli-test-token").unwrap()).await;

    let run = json_of(
        &runs_cli(
            &url,
            &[
                "create",
                "shell",
                "--backend-config",
                r#"{"shell":"/bin/sh"}"#,
            ],
        )
        .await,
    );
    let run_id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "queued");
    assert_eq!(run["config"]["shell"], "/bin/sh");

    // The old spelling still works, with a warning naming the new one.
    let old = runs_cli(&url, &["create", "shell", "--config", r#"{"old":true}"#]).await;
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("now --backend-config"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
    assert_eq!(json_of(&old)["config"]["old"], true);
    let both = runs_cli(
        &url,
        &[
            "create",
            "shell",
            "--config",
            "{}",
            "--backend-config",
            "{}",
        ],
    )
    .await;
    assert_eq!(both.status.code(), Some(2), "one spelling at a time");

    let command = json_of(&runs_cli(&url, &["enqueue", &run_id, "echo hi"]).await);
    assert_eq!(command["prompt"], "echo hi");

    let listed = json_of(&runs_cli(&url, &["list", "--status", "queued"]).await);
    assert!(listed.to_string().contains(&run_id), "{listed}");

    let cancelled = json_of(&runs_cli(&url, &["cancel", &run_id]).await);
    assert_eq!(cancelled["id"], run_id.as_str());

    let bad = runs_cli(&url, &["list", "--status", "bogus"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown status `bogus`"));

    let not_object = runs_cli(&url, &["create", "shell", "--backend-config", "[1]"]).await;
    assert_eq!(not_object.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&not_object.stderr)
            .contains("--backend-config must be a JSON object")
    );
    manager.stop().await;
}
