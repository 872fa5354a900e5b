//! A plugin that traps, spins or allocates without bound ends only its own session, with the right
//! failure kind and a message naming it, while a healthy session in the same host completes.

use std::sync::Arc;

use aac_host::outcome::{FailureKind, TerminalStatus, TurnOutcome};
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{BackendPlugin, PluginHost};
use aac_tests::{plugin, sandboxless_session, shell_turn, test_host};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn misbehave(plugin: Arc<BackendPlugin>, how: &str) -> TurnOutcome {
    let options = sandboxless_session(&format!("run-{how}"));
    let mut session = plugin.open_session(options).await.expect("session opens");
    let command = CommandInfo {
        command_id: format!("cmd-{how}"),
        sequence: 1,
        prompt: how.into(),
        payload_json: "{}".into(),
    };
    let outcome = session
        .run_turn(command.clone(), CancellationToken::new())
        .await;
    // The broken session keeps reporting its failure instead of entering the instance again.
    let again = session.run_turn(command, CancellationToken::new()).await;
    assert_eq!(again.failure_kind, outcome.failure_kind);
    outcome
}

async fn load(host: &Arc<PluginHost>) -> Arc<BackendPlugin> {
    Arc::new(
        host.load_backend(&plugin("test-misbehave"))
            .await
            .expect("test plugin loads"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_sessions_end_alone_while_a_healthy_one_completes() {
    let host = test_host(None);
    let bad = load(&host).await;
    let workspace = tempfile::tempdir().unwrap();

    let healthy = {
        let host = host.clone();
        let workspace = workspace.path().to_path_buf();
        tokio::spawn(async move {
            shell_turn(
                &host,
                &workspace,
                "sleep 2; echo still-alive",
                json!({}),
                CancellationToken::new(),
            )
            .await
        })
    };
    let trap = tokio::spawn(misbehave(bad.clone(), "trap"));
    let spin = tokio::spawn(misbehave(bad.clone(), "spin"));
    let hog = tokio::spawn(misbehave(bad.clone(), "hog"));

    let trap = trap.await.unwrap();
    assert_eq!(trap.status, TerminalStatus::Failed);
    assert_eq!(
        trap.failure_kind,
        Some(FailureKind::BackendCrashed),
        "{trap:?}"
    );
    let message = trap.message.unwrap();
    assert!(
        message.contains("plugin `test-misbehave` 0.1.0"),
        "{message}"
    );
    assert!(
        message.contains("misbehaving on purpose"),
        "the panic message must be shown: {message}"
    );

    let spin = spin.await.unwrap();
    assert_eq!(
        spin.failure_kind,
        Some(FailureKind::BackendTimeout),
        "{spin:?}"
    );
    assert!(spin.message.unwrap().contains("plugin `test-misbehave`"));

    let hog = hog.await.unwrap();
    assert_eq!(
        hog.failure_kind,
        Some(FailureKind::ResourceExhausted),
        "{hog:?}"
    );
    assert!(hog.message.unwrap().contains("memory limit"));

    let healthy = healthy.await.unwrap();
    assert_eq!(
        healthy.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}",
        healthy.report.outcome
    );
    assert_eq!(healthy.lines("stdout"), ["still-alive"]);

    // The plugin itself is fine: a new session of it works.
    assert_eq!(misbehave(bad, "ok").await.status, TerminalStatus::Completed);
}
