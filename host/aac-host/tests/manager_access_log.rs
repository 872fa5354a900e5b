//! The standalone manager logs each request at info on target `access` (method, matched route,
//! status, latency, run and runner ids), as JSON lines with `--log-format json`, without colour
//! when stderr is not a terminal, and never a token.

use std::process::Stdio;
use std::time::Duration;

use aac_host::manager::client::ManagerClient;
use aac_host::manager::protocol::{CreateRun, RegisterRunner};

const TOKEN: &str = "access-log-secret-token-4711";

#[tokio::test]
async fn each_request_is_one_json_access_line_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = aac_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("manager.redb"))
        .args(["--log-format", "json"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env_remove("AAC_LOG")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = ManagerClient::new(&url, TOKEN).unwrap();
    for _ in 0..200 {
        if reqwest::get(format!("{url}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = client
        .create_run(CreateRun {
            id: Some("run-logged".into()),
            backend: "shell".into(),
            bundle: None,
            config: serde_json::json!({}),
            max_attempts: None,
            require_labels: Default::default(),
        })
        .await
        .unwrap();
    client.get_run(&run.id).await.unwrap();
    client
        .register_runner(RegisterRunner {
            id: Some("runner-logged".into()),
            name: "runner-logged".into(),
            labels: Default::default(),
        })
        .await
        .unwrap();
    let lease = client
        .claim(&run.id, "runner-logged", Duration::from_secs(30))
        .await
        .unwrap();
    client
        .heartbeat(&run.id, &lease.lease_token, None)
        .await
        .unwrap();
    let unknown = reqwest::get(format!("{url}/v1/nowhere?token={TOKEN}"))
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 401);

    // SIGTERM: the manager stops and its stderr ends.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI codes when piped:\n{stderr}"
    );
    assert!(
        !stderr.contains(TOKEN),
        "a token reached the log:\n{stderr}"
    );
    assert!(
        !stderr.contains(&lease.lease_token),
        "the lease token reached the log:\n{stderr}"
    );
    let access: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "access")
        .collect();
    let find = |method: &str, route: &str| {
        access
            .iter()
            .find(|l| l["method"] == method && l["route"] == route)
            .unwrap_or_else(|| panic!("no access line for {method} {route}:\n{stderr}"))
            .clone()
    };
    let get = find("GET", "/v1/runs/{run}");
    assert_eq!(get["status"], 200);
    assert_eq!(get["run"], "run-logged");
    assert_eq!(get["level"], "INFO");
    assert!(get["latency_ms"].as_f64().is_some(), "{get}");
    let claim = find("POST", "/v1/runs/{run}/claim");
    assert_eq!(claim["runner"], "runner-logged", "{claim}");
    assert_eq!(claim["run"], "run-logged");
    assert_eq!(find("POST", "/v1/runs/{run}/heartbeat")["status"], 200);
    assert_eq!(find("POST", "/v1/runs")["status"], 201);
    let refused = find("GET", "(no route)");
    assert_eq!(refused["status"], 401, "{refused}");
}
