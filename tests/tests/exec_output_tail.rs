//! A process's last output survives a plugin slower than the process. Docker closes an exec's
//! streams 2 s after its process exits, read or not; the host reads ahead of the plugin, so a
//! process that wrote a lot and exited while its reader was busy still delivers every byte. Real
//! dockerd.

use std::sync::Arc;
use std::time::Duration;

use aac_host::sandbox::{ExecSpec, ProcessHandle, ProcessLimits, Sandbox};
use tokio_util::sync::CancellationToken;

/// Bytes `seq 1 n` prints.
fn seq_bytes(n: u64) -> usize {
    (1..=n).map(|i| i.to_string().len() + 1).sum()
}

async fn sandbox(workspace: &std::path::Path) -> Arc<dyn Sandbox> {
    aac_tests::open_sandbox(workspace, "test-exec-tail").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_exits_while_its_reader_is_busy_loses_no_output() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;
    const LINES: u64 = 300_000;
    // The first exec is a fresh `docker exec`; the second takes a spare process when one is ready.
    for path in ["first exec", "second exec"] {
        let spec = ExecSpec {
            argv: vec!["seq".into(), "1".into(), LINES.to_string()],
            ..ExecSpec::default()
        };
        let raw = sandbox.exec(spec.clone()).await.unwrap();
        let mut process = ProcessHandle::start(
            raw,
            &spec,
            ProcessLimits::default(),
            CancellationToken::new(),
        );
        // The reader is busy well past the process's end and Docker's 2 s.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut bytes = 0;
        let mut last = Vec::new();
        while let Some(chunk) = process.read().await {
            bytes += chunk.data.len();
            last = chunk.data.to_vec();
        }
        let exit = process.wait().await;
        assert_eq!(exit.code, Some(0), "{path}: {exit:?}");
        assert_eq!(
            bytes,
            seq_bytes(LINES),
            "{path}: output ended with {:?}",
            String::from_utf8_lossy(&last[last.len().saturating_sub(40)..])
        );
        // Give the sandbox time to prepare its spare process for the second round.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sandbox.remove().await.unwrap();
}
