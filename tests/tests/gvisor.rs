//! `sandbox.runtime = "runsc"`: a shell turn and a real Codex tool turn run under gVisor (its kernel
//! says so) and leave no container. Skipped, with a message naming the missing runtime, when `docker
//! info` does not list `runsc` (`cargo xtask docker` and `cargo xtask test` register it when they can;
//! docs/operations.md says how by hand).

use aac_host::local::LocalTurn;
use aac_host::outcome::TerminalStatus;
use aac_host::runner::RunProfile;
use aac_host::sandbox::{NetworkMode, PullPolicy};
use aac_tests::{
    containers_of_run, load_agent_plugin, local_turn, mock_openai, plugin, run_agent_turns_in,
    test_host,
};
use tokio_util::sync::CancellationToken;

const RUNTIME: &str = "runsc";

const CODEX_IMAGE: &str = "aac/codex:0.169.0";

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

async fn skipped() -> bool {
    if engine_has_runtime(RUNTIME).await {
        return false;
    }
    eprintln!(
        "skipped: the Docker engine has no `{RUNTIME}` runtime (`cargo xtask docker` installs \
         gVisor's runsc and registers it; see docs/operations.md)"
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_turn_runs_under_gvisor() {
    if skipped().await {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_tool_turn_runs_under_gvisor() {
    if skipped().await {
        return;
    }
    let mock = mock_openai::start().await;
    // The tool call proves where it ran: only gVisor's kernel writes this to its log.
    mock.push(mock_openai::shell_call(
        "call_1",
        "dmesg | grep -c 'Starting gVisor' > kernel.txt",
    ));
    mock.push(mock_openai::text("done under gVisor"));
    let agent = load_agent_plugin("codex").await;
    let profile = RunProfile {
        image: CODEX_IMAGE.into(),
        network: NetworkMode::Bridge,
        pull_policy: PullPolicy::Never,
        oci_runtime: Some(RUNTIME.into()),
        ..agent.profile()
    };
    let workspace = tempfile::tempdir().unwrap();
    let run = Box::pin(run_agent_turns_in(
        &agent,
        profile,
        mock_openai::codex_config(&mock),
        workspace.path(),
        &["check the kernel"],
        CancellationToken::new(),
    ))
    .await;

    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    let completed = run.payloads(1, "command.completed");
    assert_eq!(completed.len(), 1, "{:?}", run.kinds(1));
    assert_eq!(completed[0]["exit_code"], 0, "{completed:?}");
    let kernel = std::fs::read_to_string(workspace.path().join("kernel.txt")).unwrap();
    assert_eq!(kernel.trim(), "1", "the tool did not run under gVisor");
    assert_eq!(
        run.payloads(1, "agent.message")[0]["text"],
        "done under gVisor"
    );
    assert_eq!(
        containers_of_run(&run.run_id).await,
        0,
        "container left behind"
    );
}
