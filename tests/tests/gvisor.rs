//! `sandbox.runtime = "runsc"`: a shell turn runs under gVisor (its kernel says so) and leaves no
//! container. Skipped, with a message naming the missing runtime, when `docker info` does not list
//! `runsc` (`cargo xtask docker` / docs/operations.md say how to register it).

use aac_host::local::LocalTurn;
use aac_host::outcome::TerminalStatus;
use aac_tests::{containers_of_run, local_turn, plugin, test_host};
use tokio_util::sync::CancellationToken;

const RUNTIME: &str = "runsc";

async fn engine_has_runtime(name: &str) -> bool {
    let info = aac_tests::docker()
        .await
        .client()
        .info()
        .await
        .expect("docker info");
    info.runtimes
        .is_some_and(|runtimes| runtimes.contains_key(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_turn_runs_under_gvisor() {
    if !engine_has_runtime(RUNTIME).await {
        eprintln!(
            "skipped: the Docker engine has no `{RUNTIME}` runtime (install gVisor's runsc and \
             register it in /etc/docker/daemon.json, see docs/operations.md)"
        );
        return;
    }
    let record = local_turn(
        &test_host(None),
        LocalTurn {
            oci_runtime: Some(RUNTIME.into()),
            ..LocalTurn::new(
                plugin("shell"),
                "dmesg | head -1; echo kernel:$(uname -r); echo done",
            )
        },
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?} {:?}",
        record.report.outcome,
        record.lines("stderr")
    );
    let stdout = record.lines("stdout").join("\n");
    // gVisor's own kernel log: a runc container shares the host's and cannot read it.
    assert!(stdout.contains("Starting gVisor"), "{stdout}");
    assert!(stdout.contains("done"), "{stdout}");
    assert_eq!(containers_of_run(&record.report.run_id).await, 0);
}
