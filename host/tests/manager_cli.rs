//! `aac-host manager` serves the protocol from a store file, and what it accepted survives a
//! restart of the process.

use std::process::Stdio;
use std::time::Duration;

use aac_host::manager::client::ManagerClient;
use aac_host::manager::protocol::CreateRun;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until_up(client: &ManagerClient) {
    for _ in 0..200 {
        if client.list_runs(None).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the manager never answered");
}

#[tokio::test]
async fn the_standalone_manager_keeps_runs_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("manager.redb");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let client = ManagerClient::new(&url, "cli-test-token").unwrap();

    let manager = ManagerProcess::start(port, &db);
    wait_until_up(&client).await;
    let run = client
        .create_run(CreateRun {
            id: None,
            backend: "shell".into(),
            bundle: None,
            config: serde_json::json!({}),
        })
        .await
        .unwrap();
    let wrong = ManagerClient::new(&url, "wrong").unwrap();
    assert!(
        wrong.list_runs(None).await.is_err(),
        "a wrong token must be refused"
    );
    manager.stop().await;

    let manager = ManagerProcess::start(port, &db);
    wait_until_up(&client).await;
    let runs = client.list_runs(None).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [run.id]
    );
    manager.stop().await;
}
