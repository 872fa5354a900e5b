//! A sandbox on the bridge network reaches a service on this machine — by Docker's `host-gateway`
//! name and by the bridge interface's address — however fresh the Docker engine is (`cargo xtask
//! test` runs this file a second time against a dockerd it starts with an empty state).

use aac_host::local::LocalTurn;
use aac_host::outcome::TerminalStatus;
use aac_host::sandbox::NetworkMode;
use aac_host::sandbox::docker::HOST_ALIAS;
use aac_tests::mock_http::{MockServer, Reply, sandbox_host_address};
use aac_tests::{containers_of_run, local_turn, plugin, test_host};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_sandbox_reaches_a_host_service_by_name_and_by_address() {
    let address = sandbox_host_address().await;
    let server = MockServer::start(address, &["/ping"]).await;
    server.push(Reply::Status(200, json!({"pong": "by-name"})));
    server.push(Reply::Status(200, json!({"pong": "by-address"})));
    let port = server.addr().port();
    // busybox nc: a hand-written HTTP/1.0 request, the body ends the output. Its stdin stays open
    // a moment: the server would take an early end of the request stream for a closed connection.
    let post = |host: &str| {
        format!(
            "(printf 'POST /ping HTTP/1.0\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}'; sleep 1) | nc {host} {port}; echo"
        )
    };
    let prompt = format!("{} && {}", post(HOST_ALIAS), post(&address.to_string()));
    let workspace = tempfile::tempdir().unwrap();
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        network: NetworkMode::Bridge,
        ..LocalTurn::new(plugin("shell"), prompt)
    };
    let record = local_turn(&test_host(None), turn, CancellationToken::new()).await;
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}\nstderr: {:?}",
        record.report.outcome,
        record.lines("stderr")
    );
    let stdout = record.lines("stdout").join("\n");
    assert!(stdout.contains(r#"{"pong":"by-name"}"#), "{stdout}");
    assert!(stdout.contains(r#"{"pong":"by-address"}"#), "{stdout}");
    assert_eq!(server.model_requests().len(), 2);
    assert_eq!(containers_of_run(&record.report.run_id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_without_network_does_not_get_the_host_name() {
    let workspace = tempfile::tempdir().unwrap();
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        ..LocalTurn::new(plugin("shell"), format!("grep -c {HOST_ALIAS} /etc/hosts"))
    };
    let record = local_turn(&test_host(None), turn, CancellationToken::new()).await;
    assert_eq!(record.lines("stdout"), vec!["0".to_string()]);
}
