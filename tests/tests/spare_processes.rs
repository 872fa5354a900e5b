//! Spare processes: a sandbox keeps two `docker exec`s waiting for their command once it has
//! started a process, so back-to-back processes each find one ready; it never keeps more. Real
//! dockerd.

use std::sync::Arc;
use std::time::Duration;

use aac_host::local::{DEFAULT_IMAGE, sandbox_user};
use aac_host::sandbox::{
    ExecSpec, ProcessHandle, ProcessLimits, Sandbox, SandboxDriver, SandboxSpec,
};
use aac_tests::docker;
use tokio_util::sync::CancellationToken;

async fn sandbox(workspace: &std::path::Path) -> Arc<dyn Sandbox> {
    aac_host::sandbox::pool::prepare_workspace(workspace, &sandbox_user()).unwrap();
    let spec = SandboxSpec::new(DEFAULT_IMAGE, workspace.to_path_buf(), sandbox_user());
    docker()
        .await
        .with_runner_id("test-spares")
        .open(&spec)
        .await
        .unwrap()
}

/// Runs `script` in the sandbox; its stdout.
async fn run(sandbox: &Arc<dyn Sandbox>, script: &str) -> String {
    let spec = ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..ExecSpec::default()
    };
    let raw = sandbox.exec(spec.clone()).await.unwrap();
    let mut process = ProcessHandle::start(
        raw,
        &spec,
        ProcessLimits::default(),
        CancellationToken::new(),
    );
    let mut out = Vec::new();
    while let Some(chunk) = process.read().await {
        out.extend_from_slice(&chunk.data);
    }
    assert_eq!(process.wait().await.code, Some(0));
    String::from_utf8_lossy(&out).into_owned()
}

/// Spare shells waiting for their line, counted from /proc (each one's command line carries the
/// spare script's `read -r line`; a taken one has run its command), once the count has settled.
/// With the pool at one spare this counts 1, at two 2.
async fn waiting_spares(sandbox: &Arc<dyn Sandbox>) -> usize {
    // The pattern is put together at run time: this script's own command line must not match.
    const COUNT: &str = "p='IFS= read'; p=\"$p -r line\"; n=0; for f in /proc/[0-9]*/cmdline; do \
        tr '\\0' ' ' < $f 2>/dev/null | grep -qF \"$p\" && n=$((n+1)); done; echo $n";
    let mut last = usize::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now: usize = run(sandbox, COUNT).await.trim().parse().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the number of spare processes did not settle (last {last})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_keeps_two_spares_and_no_more() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;
    sandbox.warm_up().await.unwrap();
    assert_eq!(run(&sandbox, "echo first").await, "first\n");
    // (The counter ran on a spare too: the pool was topped up behind it.)
    assert_eq!(waiting_spares(&sandbox).await, 2);
    // Back to back, each on a spare: the pool is topped up, never past two.
    for i in 0..6 {
        assert_eq!(run(&sandbox, &format!("echo {i}")).await, format!("{i}\n"));
    }
    assert_eq!(waiting_spares(&sandbox).await, 2);
    sandbox.remove().await.unwrap();
}
