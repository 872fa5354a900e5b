//! Tokens with roles on the standalone manager (`aac-host manager --token-file FILE`): a runner
//! token cannot create or cancel runs or read what it does not hold, a client token cannot
//! register or claim — each a 403 naming the role and the endpoint; the file is re-read on SIGHUP
//! (the old token refused, the new one accepted; a bad file keeps the tokens in force and logs
//! its line); no token reaches a log line at `AAC_LOG=trace`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aac_host::manager::ManagerClient;
use aac_host::manager::client::ClientError;
use aac_host::manager::protocol::{CreateRun, RegisterRunner};
use aac_tests::wait::until;

const ALL_TOKENS: [&str; 6] = [
    "runner-secret-1",
    "client-secret-1",
    "admin-secret-1",
    "runner-secret-2",
    "client-secret-2",
    "admin-secret-9",
];

struct ManagerProcess {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl ManagerProcess {
    fn start(dir: &Path, tokens: &Path) -> Self {
        let port = aac_tests::free_port();
        let log = dir.join("manager.log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
            .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(dir.join("manager.redb"))
            .arg("--token-file")
            .arg(tokens)
            .env_remove("AAC_MANAGER_TOKEN")
            .env("AAC_LOG", "trace")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn client(&self, token: &str) -> ManagerClient {
        ManagerClient::new(&self.url, token).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    fn hang_up(&self) {
        signal(&self.child, "HUP");
    }

    async fn stop(mut self) -> String {
        signal(&self.child, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the manager stops within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}: {}", self.log());
        self.log()
    }
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

fn shell_run() -> CreateRun {
    CreateRun::new("shell")
}

/// The status and JSON body of a raw request with `token`.
async fn raw(method: reqwest::Method, url: &str, token: &str) -> (u16, serde_json::Value) {
    let reply = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or_default())
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, ClientError>, what: &str) {
    match result {
        Err(ClientError::Status {
            status: 403, code, ..
        }) => {
            assert_eq!(code, "forbidden", "{what}");
        }
        other => panic!("{what}: expected 403 forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_and_the_token_file_is_rotated_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# the team's tokens\nrunner:runner-secret-1\nclient:client-secret-1\n\nadmin:admin-secret-1\n",
    )
    .unwrap();
    let manager = ManagerProcess::start(dir.path(), &tokens);
    let runner = manager.client("runner-secret-1");
    let client = manager.client("client-secret-1");
    let admin = manager.client("admin-secret-1");
    until("the manager to answer", Duration::from_secs(60), || async {
        client.list_runs(None).await.is_ok()
    })
    .await;

    // A runner token cannot create, cancel or delete runs, enqueue, list runners or read events.
    assert_forbidden(runner.create_run(shell_run()).await, "runner creates a run");
    let (status, body) = raw(
        reqwest::Method::POST,
        &format!("{}/v1/runs", manager.url),
        "runner-secret-1",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("runner token") && message.contains("POST /v1/runs"),
        "the error names the role and the endpoint: {message}"
    );
    let run = client.create_run(shell_run()).await.unwrap();
    let other = admin.create_run(shell_run()).await.unwrap();
    assert_forbidden(runner.cancel_run(&run.id).await, "runner cancels");
    assert_forbidden(runner.events(&run.id, 0).await, "runner reads events");
    assert_forbidden(runner.list_runners().await, "runner lists runners");

    // A client token cannot register, claim, heartbeat or post events.
    assert_forbidden(
        client
            .register_runner(RegisterRunner {
                id: Some("rnr-by-client".into()),
                ..RegisterRunner::default()
            })
            .await,
        "client registers",
    );
    let (status, body) = raw(
        reqwest::Method::POST,
        &format!("{}/v1/claim-next", manager.url),
        "client-secret-1",
    )
    .await;
    assert_eq!(status, 403, "client claims: {body}");
    assert!(body["message"].as_str().unwrap().contains("client token"));
    for path in ["heartbeat", "events", "status"] {
        let (status, body) = raw(
            reqwest::Method::POST,
            &format!("{}/v1/runs/{}/{path}", manager.url, run.id),
            "client-secret-1",
        )
        .await;
        assert_eq!(status, 403, "client posts {path}: {body}");
    }

    // The runner works on the run it claimed, and reads only that run's results.
    runner
        .register_runner(RegisterRunner {
            id: Some("rnr-1".into()),
            ..RegisterRunner::default()
        })
        .await
        .unwrap();
    let lease = runner
        .claim_next("rnr-1", Duration::from_secs(30), Some(vec!["shell".into()]))
        .await
        .unwrap()
        .expect("a queued run");
    assert_eq!(lease.run.id, run.id, "oldest first");
    assert!(
        runner
            .held_results(&run.id, &lease.lease_token)
            .await
            .unwrap()
            .is_empty()
    );
    assert_forbidden(runner.results(&run.id).await, "results without a lease");
    match runner.held_results(&other.id, &lease.lease_token).await {
        Err(ClientError::Lease { code, .. }) => assert_eq!(code, "lease-lost"),
        other => panic!("another run's results with this lease: {other:?}"),
    }
    assert!(
        client.results(&run.id).await.is_ok(),
        "a client reads results"
    );

    // Rotation: the old tokens are refused, the new ones accepted, without a restart.
    std::fs::write(&tokens, "runner:runner-secret-2\nclient:client-secret-2\n").unwrap();
    manager.hang_up();
    let rotated = manager.client("client-secret-2");
    until(
        "the new token to be accepted",
        Duration::from_secs(30),
        || async { rotated.list_runs(None).await.is_ok() },
    )
    .await;
    assert!(matches!(
        client.list_runs(None).await,
        Err(ClientError::Unauthorized { .. })
    ));
    assert!(matches!(
        admin.list_runs(None).await,
        Err(ClientError::Unauthorized { .. })
    ));
    assert_forbidden(
        manager
            .client("runner-secret-2")
            .create_run(shell_run())
            .await,
        "the new runner token keeps its role",
    );

    // A bad file keeps the tokens in force and says which line is wrong.
    std::fs::write(
        &tokens,
        "client:client-secret-3\nsuperuser:admin-secret-9\n",
    )
    .unwrap();
    manager.hang_up();
    until(
        "the reload error in the log",
        Duration::from_secs(30),
        || async { manager.log().contains("line 2") },
    )
    .await;
    assert!(
        rotated.list_runs(None).await.is_ok(),
        "the tokens in force stay"
    );
    assert!(matches!(
        manager.client("client-secret-3").list_runs(None).await,
        Err(ClientError::Unauthorized { .. })
    ));

    let log = manager.stop().await;
    assert!(
        log.contains("unknown role \"superuser\""),
        "the error names what is wrong: {log}"
    );
    for token in ALL_TOKENS.iter().chain(&["client-secret-3"]) {
        assert!(!log.contains(token), "{token} reached the log:\n{log}");
    }
}
