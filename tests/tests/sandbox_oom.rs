//! The OOM killer hitting any process of the sandbox during a turn is reported, even a grandchild
//! whose parent goes on and exits 0.

use aac_host::local::LocalTurn;
use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_host::sandbox::ResourceLimits;
use aac_tests::{local_turn, plugin, test_host};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_killed_by_the_oom_killer_is_reported() {
    let workspace = tempfile::tempdir().unwrap();
    // sh -c PROMPT → sh -c → tail, which buffers /dev/zero (no newline) until the kernel kills it.
    let prompt = "sh -c 'tail /dev/zero'; echo child-status=$?";
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        limits: ResourceLimits {
            memory_bytes: Some(16 << 20),
            ..ResourceLimits::default()
        },
        ..LocalTurn::new(plugin("shell"), prompt)
    };
    let record = local_turn(&test_host(None), turn, CancellationToken::new()).await;
    assert_eq!(record.lines("stdout"), vec!["child-status=137".to_string()]);
    let outcome = &record.report.outcome;
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::OomKilled),
        "{outcome:?}"
    );
    let exited: Vec<_> = record
        .events
        .iter()
        .filter(|e| e.kind == "process.exited")
        .collect();
    assert_eq!(exited[0].payload["code"], 0);
    assert_eq!(exited[0].payload["oom_killed"], true);
}
