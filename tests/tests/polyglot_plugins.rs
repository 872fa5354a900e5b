//! The JavaScript and Python example backends (examples/js-shell, examples/python-shell, built by
//! `cargo xtask plugins --polyglot` with jco and componentize-py) run a real turn in the Docker
//! sandbox like the Rust `shell`: output lines in order, stderr apart, config `env`, the exit
//! code read the standard way, and only events of the registry. Skipped, saying why, when node or
//! python3 is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aac_host::local::LocalTurn;
use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_host::plugin::{PluginHost, PluginHostConfig, PluginLimits};
use aac_tests::{containers_of_run, local_turn};
use serde_json::json;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_shell_runs_a_turn() {
    a_turn_runs_like_the_rust_shell("js-shell", "node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_shell_runs_a_turn() {
    a_turn_runs_like_the_rust_shell("python-shell", "python3").await;
}
