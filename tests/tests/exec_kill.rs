//! A kill reaches the whole process tree, even a tree that keeps forking while it is walked: the
//! host stops the tree walk after walk until nothing new appears, then signals it. A forker's
//! children made during one walk used to be orphaned out of the tree and outlive both TERM and
//! KILL. Real dockerd.

use std::sync::Arc;
use std::time::Duration;

use aac_host::sandbox::{
    ExecSpec, KillReason, OutputStream, ProcessHandle, ProcessLimits, Sandbox,
};
use tokio_util::sync::CancellationToken;

async fn sandbox(workspace: &std::path::Path) -> Arc<dyn Sandbox> {
    aac_tests::open_sandbox(workspace, "test-exec-kill").await
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..ExecSpec::default()
    }
}

/// Runs `script` to its end; its stdout.
async fn output_of(sandbox: &Arc<dyn Sandbox>, script: &str) -> String {
    let spec = sh(script);
    let raw = sandbox.exec(spec.clone()).await.unwrap();
    let mut process = ProcessHandle::start(
        raw,
        &spec,
        ProcessLimits::default(),
        CancellationToken::new(),
    );
    let mut out = Vec::new();
    while let Some(chunk) = process.read().await {
        if chunk.stream == OutputStream::Stdout {
            out.extend_from_slice(&chunk.data);
        }
    }
    process.wait().await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `sleep 30` processes alive in the container (the forker's children).
async fn sleepers(sandbox: &Arc<dyn Sandbox>) -> usize {
    // `[s]leep` so the pattern does not match this script's own command line.
    let out = output_of(
        sandbox,
        "n=0; for f in /proc/[0-9]*/cmdline; do \
         tr '\\0' ' ' 2>/dev/null < $f | grep -q '^[s]leep 30 ' && n=$((n+1)); done; echo $n",
    )
    .await;
    out.trim()
        .parse()
        .unwrap_or_else(|err| panic!("counting sleepers: {err}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_forking_while_it_is_killed_leaves_no_process_behind() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;
    // A child every 10 ms, forever; none of them ends on its own within the test.
    const FORKER: &str = "while :; do sleep 30 & sleep 0.01; done";
    for (reason, grace) in [
        // TERM kills this tree (no process traps it); the grace is long enough that what TERM
        // missed would still be alive when counted.
        (KillReason::Requested, Duration::from_secs(30)),
        // A short grace: the KILL walk does the work.
        (KillReason::Timeout, Duration::from_millis(1)),
    ] {
        let spec = sh(FORKER);
        let raw = sandbox.exec(spec.clone()).await.unwrap();
        let limits = ProcessLimits {
            kill_grace: grace,
            ..ProcessLimits::default()
        };
        let mut process = ProcessHandle::start(raw, &spec, limits, CancellationToken::new());
        // Enough children that one walk of the tree takes a while.
        aac_tests::wait::until(
            "the forker to have 40 children",
            Duration::from_secs(60),
            || {
                let sandbox = sandbox.clone();
                async move { sleepers(&sandbox).await >= 40 }
            },
        )
        .await;
        process.kill(reason);
        let exit = tokio::time::timeout(Duration::from_secs(60), process.wait())
            .await
            .expect("the killed process ended");
        assert!(exit.code != Some(0), "{reason:?}: {exit:?}");
        // Children that escaped the tree would be reparented and go on sleeping.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            sleepers(&sandbox).await,
            0,
            "{reason:?}: children of the forker outlived the kill"
        );
    }
    sandbox.remove().await.unwrap();
}
