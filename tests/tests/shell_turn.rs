//! The shell backend in a real Docker container: files reach the host, output keeps its order,
//! exit codes map to statuses, timeouts and cancellation kill the process, and the container is
//! removed on every path.

use std::time::{Duration, Instant};

use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_tests::{containers_of_run, shell_turn, test_host};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_writes_a_file_the_host_sees() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let record = shell_turn(
        &host,
        workspace.path(),
        "echo written-in-the-sandbox > result.txt && id -u",
        json!({}),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}",
        record.report.outcome
    );
    let content = std::fs::read_to_string(workspace.path().join("result.txt")).unwrap();
    assert_eq!(content.trim(), "written-in-the-sandbox");
    let uid = record.lines("stdout");
    assert_ne!(
        uid,
        vec!["0".to_string()],
        "the sandbox must not run as root"
    );
    assert_eq!(
        containers_of_run(&record.report.run_id).await,
        0,
        "container left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_keeps_its_order() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let script = "i=1; while [ $i -le 2000 ]; do echo line-$i; i=$((i+1)); done; \
                  for n in 1 2 3; do echo out-$n; sleep 0.1; echo err-$n >&2; sleep 0.1; done";
    let record = shell_turn(
        &host,
        workspace.path(),
        script,
        json!({}),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(record.report.outcome.status, TerminalStatus::Completed);

    let stdout = record.lines("stdout");
    let expected: Vec<String> = (1..=2000)
        .map(|i| format!("line-{i}"))
        .chain((1..=3).map(|n| format!("out-{n}")))
        .collect();
    assert_eq!(stdout, expected);

    // Across streams, lines written apart in time arrive in the order they were written.
    let interleaved: Vec<String> = record
        .events
        .iter()
        .filter_map(|e| e.payload["text"].as_str())
        .filter(|t| t.starts_with("out-") || t.starts_with("err-"))
        .map(String::from)
        .collect();
    assert_eq!(
        interleaved,
        ["out-1", "err-1", "out-2", "err-2", "out-3", "err-3"]
    );

    let seqs: Vec<u64> = record.events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers must be dense and ordered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_map_to_statuses() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let failed = shell_turn(
        &host,
        workspace.path(),
        "echo partial; exit 3",
        json!({}),
        CancellationToken::new(),
    )
    .await;
    let outcome = &failed.report.outcome;
    assert_eq!(outcome.status, TerminalStatus::Failed);
    assert_eq!(outcome.failure_kind, Some(FailureKind::AgentError));
    assert!(
        outcome.message.as_deref().unwrap().contains("code 3"),
        "{outcome:?}"
    );
    assert_eq!(failed.lines("stdout"), ["partial"]);

    let missing = shell_turn(
        &host,
        workspace.path(),
        "no-such-command",
        json!({}),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(missing.report.outcome.status, TerminalStatus::Failed);
    assert!(
        missing
            .lines("stderr")
            .iter()
            .any(|l| l.contains("no-such-command"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_process_tree() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let record = shell_turn(
        &host,
        workspace.path(),
        // A child that would write a file after the timeout, if it survived the kill.
        "(sleep 3; echo survived > survivor.txt) & sleep 30",
        json!({ "timeout_ms": 500 }),
        CancellationToken::new(),
    )
    .await;
    let outcome = &record.report.outcome;
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.failure_kind, Some(FailureKind::TurnTimeout));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not stop the turn"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !workspace.path().join("survivor.txt").exists(),
        "a child process survived the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_turn_reports_cancelled_and_removes_the_container() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    // Cancel once the turn is surely running (it leaves a file in the workspace after printing),
    // not after a fixed delay a loaded machine can outlast before the container even starts.
    tokio::spawn({
        let cancel = cancel.clone();
        let flag = workspace.path().join("started.flag");
        async move {
            aac_tests::wait::until_sync("the turn to start", Duration::from_secs(120), || {
                flag.exists()
            })
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        }
    });
    let record = shell_turn(
        &host,
        workspace.path(),
        "echo started; touch started.flag; sleep 60",
        json!({}),
        cancel,
    )
    .await;
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Cancelled,
        "{:?}",
        record.report.outcome
    );
    assert_eq!(record.lines("stdout"), ["started"]);
    assert_eq!(
        containers_of_run(&record.report.run_id).await,
        0,
        "container left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_image_unavailable_before_anything_runs() {
    use aac_host::local::LocalTurn;
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        image: "aac/no-such-image:0.0.0".into(),
        ..LocalTurn::new(aac_tests::plugin("shell"), "echo never")
    };
    let record = aac_tests::local_turn(&host, turn, CancellationToken::new()).await;
    let outcome = &record.report.outcome;
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::ImageUnavailable),
        "{outcome:?}"
    );
    let message = outcome.message.as_deref().unwrap();
    assert!(
        message.contains("image `aac/no-such-image:0.0.0` is not present"),
        "{message}"
    );
    assert!(message.contains("pull policy is `never`"), "{message}");
    assert!(
        record.events.is_empty(),
        "nothing may run without the image"
    );
}
