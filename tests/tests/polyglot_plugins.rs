//! The JavaScript and Python example backends (examples/js-shell, examples/python-shell, built by
//! `cargo xtask plugins --polyglot` with jco and componentize-py) are `aac:plugin@0.2.1` plugins
//! and behave like the Rust `shell`: a bad config refuses the session as `config-invalid` naming
//! the setting, a host-killed process reports the typed kill reason, and a real turn in the Docker
//! sandbox has output lines in order, stderr apart, config `env`, the exit code read the standard
//! way, and only events of the registry (the host's own debug-build check counts no violation).
//! Skipped, saying why, when node or python3 is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aac_host::local::LocalTurn;
use aac_host::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{
    BackendSession, ContractVersion, PluginHost, PluginHostConfig, PluginLimits,
};
use aac_host::sandbox::{SandboxDriver, SandboxSpec};
use aac_tests::host_driver::HostProcessDriver;
use aac_tests::{containers_of_run, local_turn, sandboxless_session};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The built example, or `None` (with the reason printed) when `tool` is not installed.
fn example(name: &str, tool: &str) -> Option<PathBuf> {
    let installed = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!("SKIPPED: `{tool}` is not on PATH, so the {name} example cannot be built");
        return None;
    }
    let dir = std::env::var_os("AAC_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/plugins"));
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: build it with `cargo xtask plugins --polyglot`",
        wasm.display()
    );
    Some(wasm)
}

/// The host's default limits (these components are 12–18 MB), with a compile cache of their own
/// so a second run does not compile them again.
fn host() -> Arc<PluginHost> {
    PluginHost::new(PluginHostConfig {
        cache_dir: Some(root().join("target/polyglot/compiled")),
        limits: PluginLimits::default(),
    })
    .expect("creating the plugin host")
}

async fn a_turn_runs_like_the_rust_shell(name: &str, tool: &str) {
    let Some(wasm) = example(name, tool) else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        config_json: json!({ "env": { "GREETING": "hello" } }).to_string(),
        ..LocalTurn::new(
            wasm,
            "echo \"$GREETING from $(pwd)\"; echo oops >&2; echo été > f.txt; printf 'no newline'; exit 3",
        )
    };
    let record = local_turn(&host(), turn, CancellationToken::new()).await;

    let outcome = &record.report.outcome;
    assert_eq!(
        outcome.status,
        TerminalStatus::Failed,
        "{name}: {outcome:?}"
    );
    assert_eq!(outcome.failure_kind, Some(FailureKind::AgentError));
    assert_eq!(
        outcome.message.as_deref(),
        Some("the script exited with code 3"),
        "{name}"
    );
    assert_eq!(
        record.lines("stdout"),
        ["hello from /workspace", "no newline"],
        "{name}"
    );
    assert_eq!(record.lines("stderr"), ["oops"], "{name}");
    let exited: Vec<_> = record
        .events
        .iter()
        .filter(|e| e.kind == "process.exited")
        .collect();
    assert_eq!(exited.len(), 1, "{name}");
    assert_eq!(exited[0].payload["code"], 3, "{name}");
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("f.txt")).unwrap(),
        "été\n"
    );
    aac_tests::event_registry::assert_registered(&record.events);
    assert_eq!(containers_of_run(&record.report.run_id).await, 0);
}

async fn run_turn(
    session: &mut BackendSession,
    events: &mut mpsc::UnboundedReceiver<TurnEvent>,
    prompt: &str,
) -> (TurnOutcome, Vec<TurnEvent>) {
    let command = CommandInfo {
        command_id: "c1".into(),
        sequence: 1,
        prompt: prompt.into(),
        payload_json: "{}".into(),
    };
    let outcome = session.run_turn(command, CancellationToken::new()).await;
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    (outcome, seen)
}

/// Contract 0.2.1 without Docker (processes on the host): inspected as 0.2.1, a bad config is
/// `config-invalid` naming the setting, a timeout's kill reason is the 0.2.1 enum, and every
/// event passes the host's own registry check.
async fn a_0_2_plugin_like_the_rust_shell(name: &str, tool: &str) {
    let Some(wasm) = example(name, tool) else {
        return;
    };
    let host = host();
    let inspection = host.inspect(&wasm).await.unwrap();
    assert_eq!(inspection.shape.wit_version, "0.2.1", "{name}");
    assert_eq!(inspection.shape.contract, ContractVersion::V0_2, "{name}");
    assert!(
        inspection
            .shape
            .imports
            .iter()
            .any(|i| i == "aac:plugin/sandbox@0.2.1"),
        "{name}: {:?}",
        inspection.shape.imports
    );
    let backend = host.load_backend(&wasm).await.unwrap();
    assert_eq!(backend.contract(), ContractVersion::V0_2, "{name}");

    for (config, setting) in [
        (r#"{"timeout_ms":"soon"}"#, "config `timeout_ms`"),
        (r#"{"env":{"GREETING":1}}"#, "config `env.GREETING`"),
        (r#"{"shell":["sh"]}"#, "config `shell`"),
        ("[1]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ] {
        let mut options = sandboxless_session("run-bad-config");
        options.run.config_json = config.into();
        let refused = backend.open_session(options).await.err().unwrap();
        assert_eq!(refused.status, TerminalStatus::Failed, "{name} {config}");
        assert_eq!(
            refused.failure_kind,
            Some(FailureKind::ConfigInvalid),
            "{name} {config}: {refused:?}"
        );
        let message = refused.message.unwrap_or_default();
        assert!(message.contains(setting), "{name} {config}: {message}");
    }

    let dir = tempfile::tempdir().unwrap();
    let driver = HostProcessDriver::new();
    let spec = SandboxSpec::new("none", dir.path().to_path_buf(), "1000:1000".into());
    let sandbox = driver.open(&spec).await.unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut options = sandboxless_session("run-polyglot-timeout");
    options.run.config_json = r#"{"timeout_ms": 300, "env": {"WHO": "me"}}"#.into();
    options.sandbox = Some(sandbox.clone());
    options.events = tx;
    let mut session = backend.open_session(options).await.ok().unwrap();

    let (outcome, seen) = run_turn(&mut session, &mut events, "echo $WHO; sleep 30").await;
    assert_eq!(
        outcome.status,
        TerminalStatus::Failed,
        "{name}: {outcome:?}"
    );
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::TurnTimeout),
        "{name}"
    );
    assert_eq!(
        outcome.message.as_deref(),
        Some("the script was killed: timeout"),
        "{name}"
    );
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["output.stdout", "process.exited"],
        "{name}: {seen:?}"
    );
    assert_eq!(seen[0].payload, json!({ "text": "me" }), "{name}");
    let exited = &seen[1].payload;
    assert_eq!(exited["killed"], true, "{name}: {exited}");
    assert_eq!(exited["kill_reason"], "timeout", "{name}: {exited}");
    assert_eq!(exited["oom_killed"], false, "{name}: {exited}");
    aac_tests::event_registry::assert_registered(&seen);
    assert_eq!(session.schema_violations(), 0, "{name}");
    session.close().await;
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_shell_is_a_0_2_plugin() {
    a_0_2_plugin_like_the_rust_shell("js-shell", "node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_shell_is_a_0_2_plugin() {
    a_0_2_plugin_like_the_rust_shell("python-shell", "python3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_shell_runs_a_turn() {
    a_turn_runs_like_the_rust_shell("js-shell", "node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_shell_runs_a_turn() {
    a_turn_runs_like_the_rust_shell("python-shell", "python3").await;
}
