//! Hostile plugins that only wait: a plugin blocked in a WASI pollable uses no CPU, so only its
//! wall-clock deadline (`[limits] call_wall` / `turn_wall`) or a cancellation ends the call — in
//! `describe`, `start`, `run-turn`, `close` and `materialize` alike — while finite waits are not
//! charged as CPU. (Through the real `aac-host run`: `hostile_cli.rs`.)

use std::sync::Arc;
use std::time::Duration;

use aac_host::outcome::{FailureKind, TerminalStatus, TurnOutcome};
use aac_host::plugin::Bundle;
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{
    BackendPlugin, Integrity, MaterializeOptions, PluginHost, PluginHostConfig, PluginLimits,
};
use aac_tests::{plugin, sandboxless_session};
use tokio_util::sync::CancellationToken;

/// A host whose plugins get 1 s of CPU per call and 2 s (calls) or 4 s (turns) of wall time.
fn waiting_host() -> Arc<PluginHost> {
    PluginHost::new(PluginHostConfig {
        cache_dir: None,
        limits: PluginLimits {
            memory_bytes: 64 << 20,
            call_cpu: Duration::from_secs(1),
            turn_cpu: Duration::from_secs(1),
            call_wall: Duration::from_secs(2),
            turn_wall: Duration::from_secs(4),
            ..PluginLimits::default()
        },
    })
    .expect("creating the plugin host")
}

async fn hostile(host: &Arc<PluginHost>) -> BackendPlugin {
    host.load_backend(&plugin("test-hostile"))
        .await
        .expect("the hostile plugin loads")
}

fn command(prompt: &str) -> CommandInfo {
    CommandInfo {
        command_id: "cmd-1".into(),
        sequence: 1,
        prompt: prompt.into(),
        payload_json: "{}".into(),
    }
}

fn assert_wall_timeout(outcome: &TurnOutcome, call: &str, setting: &str) {
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::BackendTimeout),
        "{outcome:?}"
    );
    let message = outcome.message.as_deref().unwrap_or_default();
    assert!(message.contains("plugin `test-hostile` 0.1.0"), "{message}");
    assert!(
        message.contains(&format!(
            "did not return from `{call}` within its wall-clock deadline"
        )) && message.contains(setting),
        "{message}"
    );
}

#[tokio::test]
async fn a_describe_that_waits_forever_fails_the_load_at_its_wall_deadline() {
    let host = waiting_host();
    let err = host
        .load_backend(&plugin("test-stuck"))
        .await
        .err()
        .expect("a plugin stuck in describe is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("did not return from `describe` within its wall-clock deadline of 2s")
            && message.contains("[limits] call_wall"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_run_turn_and_close_that_wait_forever_end_at_their_wall_deadlines() {
    let host = waiting_host();
    let plugin = hostile(&host).await;

    let stuck = plugin
        .open_session(sandboxless_session("run-block-start"))
        .await
        .err()
        .expect("a start that never returns fails");
    assert_wall_timeout(&stuck, "start", "[limits] call_wall");

    let mut session = plugin
        .open_session(sandboxless_session("run-block-close"))
        .await
        .expect("session opens");
    let outcome = session
        .run_turn(command("block"), CancellationToken::new())
        .await;
    assert_wall_timeout(&outcome, "run-turn", "[limits] turn_wall");
    // The abandoned instance is not entered again: the next turn gets the same answer at once.
    let again = session
        .run_turn(command("ok 1"), CancellationToken::new())
        .await;
    assert_eq!(again, outcome);
    session.close().await;

    // `close` waiting forever returns (logged) once call_wall passed.
    let session = plugin
        .open_session(sandboxless_session("run-block-close"))
        .await
        .expect("session opens");
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_not_charged_as_cpu() {
    let host = waiting_host();
    let plugin = hostile(&host).await;
    let mut session = plugin
        .open_session(sandboxless_session("run-sleeps"))
        .await
        .expect("session opens");
    // 12 × 250 ms = 3 s of sleeping: three times the 1 s CPU budget, within the 4 s wall.
    let outcome = session
        .run_turn(command("sleep 12"), CancellationToken::new())
        .await;
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.message.as_deref(), Some("slept 12 times"));
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_ends_a_start_that_waits_forever() {
    // Deadlines far away: only the cancellation can end the call.
    let host = PluginHost::new(PluginHostConfig {
        cache_dir: None,
        limits: PluginLimits {
            call_wall: Duration::from_secs(3600),
            ..PluginLimits::default()
        },
    })
    .unwrap();
    let plugin = hostile(&host).await;
    let options = sandboxless_session("run-block-start");
    let cancel = options.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let outcome = plugin
        .open_session(options)
        .await
        .err()
        .expect("a cancelled start fails");
    assert_eq!(outcome.status, TerminalStatus::Cancelled, "{outcome:?}");
    let message = outcome.message.unwrap_or_default();
    assert!(
        message.contains("`start`") && message.contains("cancelled"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_materializer_that_waits_forever_leaves_neither_workspace_nor_staging() {
    let host = waiting_host();
    let touch = host
        .load_materializer(&plugin("test-touch-materializer"), &Integrity::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let bundle = Bundle {
        // `http`: no local archive is opened; the test plugin fetches nothing.
        kind: "http".into(),
        location: "hostile:block".into(),
        sha256: None,
        size: None,
    };
    let untouched = || {
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            ["ws"],
            "no staging directory is left beside the workspace"
        );
        assert_eq!(std::fs::read_dir(&workspace).unwrap().count(), 0);
    };

    let options = MaterializeOptions {
        wall: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let failure = touch
        .materialize(&bundle, &workspace, &options)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::BackendTimeout, "{failure:?}");
    assert!(
        failure
            .message
            .contains("did not return from `materialize` within its wall-clock deadline of 2s")
            && failure.message.contains("[bundles] wall"),
        "{failure:?}"
    );
    untouched();

    // A cancel ends it as well, long before its (default) deadline.
    let options = MaterializeOptions::default();
    let cancel = options.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let failure = touch
        .materialize(&bundle, &workspace, &options)
        .await
        .unwrap_err();
    assert!(failure.message.contains("was cancelled"), "{failure:?}");
    untouched();
}
