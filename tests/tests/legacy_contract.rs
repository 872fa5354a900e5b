//! Contract versions: a plugin built against the frozen `aac:plugin@0.1.0` WIT
//! (`tests/plugins/legacy-v0-1`) keeps loading and running turns through the host's 0.1.0 adapter,
//! and a component built for a version the host does not know is refused, naming it and the
//! versions the host loads. No Docker: the turn's processes run on `HostProcessDriver`.

use aac_host::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{BackendSession, ContractVersion};
use aac_host::sandbox::{SandboxDriver, SandboxSpec};
use aac_tests::host_driver::HostProcessDriver;
use aac_tests::{plugin, sandboxless_session, test_host};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn run_turn(
    session: &mut BackendSession,
    events: &mut mpsc::UnboundedReceiver<TurnEvent>,
    id: &str,
    prompt: &str,
) -> (TurnOutcome, Vec<TurnEvent>) {
    let command = CommandInfo {
        command_id: id.into(),
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

fn exited(events: &[TurnEvent]) -> &serde_json::Value {
    &events
        .iter()
        .find(|e| e.kind == "process.exited")
        .expect("a process.exited event")
        .payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_plugin_runs_turns_through_the_adapter() {
    let host = test_host(None);
    let path = plugin("test-legacy-v0-1");
    let inspection = host.inspect(&path).await.unwrap();
    assert_eq!(inspection.shape.wit_version, "0.1.0");
    assert_eq!(inspection.shape.contract, ContractVersion::V0_1);
    assert!(
        inspection
            .shape
            .imports
            .iter()
            .any(|i| i == "aac:plugin/sandbox@0.1.0"),
        "{:?}",
        inspection.shape.imports
    );
    let backend = host.load_backend(&path).await.unwrap();
    assert_eq!(backend.contract(), ContractVersion::V0_1);
    assert_eq!(backend.description(), "built against aac:plugin@0.1.0");

    let dir = tempfile::tempdir().unwrap();
    let driver = HostProcessDriver::new();
    let spec = SandboxSpec::new("none", dir.path().to_path_buf(), "1000:1000".into());
    let sandbox = driver.open(&spec).await.unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut options = sandboxless_session("run-legacy");
    options.sandbox = Some(sandbox.clone());
    options.events = tx;
    let mut session = backend.open_session(options).await.ok().unwrap();

    // Output and exit code travel through the 0.1.0 sandbox and events interfaces.
    let (outcome, seen) = run_turn(
        &mut session,
        &mut events,
        "c1",
        "echo hello from 0.1; pwd; exit 3",
    )
    .await;
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.failure_kind, Some(FailureKind::AgentError));
    assert_eq!(outcome.message.as_deref(), Some("exited with Some(3)"));
    let stdout: String = seen
        .iter()
        .filter(|e| e.kind == "output.stdout")
        .map(|e| e.payload["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(stdout.contains("hello from 0.1\n"), "{seen:?}");
    let workspace = dir.path().canonicalize().unwrap();
    assert!(stdout.contains(workspace.to_str().unwrap()), "{stdout}");
    assert_eq!(exited(&seen)["code"], 3);
    assert_eq!(exited(&seen)["kill_reason"], serde_json::Value::Null);

    // 0.2.0's typed kill reason reaches a 0.1.0 plugin as the string 0.1.0 documents.
    let (outcome, seen) = run_turn(&mut session, &mut events, "c2", "timeout:sleep 30").await;
    assert_eq!(outcome.failure_kind, Some(FailureKind::TurnTimeout));
    assert_eq!(outcome.message.as_deref(), Some("killed: timeout"));
    assert_eq!(exited(&seen)["kill_reason"], "timeout");
    assert_eq!(exited(&seen)["killed"], true);

    let (outcome, _) = run_turn(&mut session, &mut events, "c3", "true").await;
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    session.close().await;
    sandbox.remove().await.unwrap();
}

#[tokio::test]
async fn a_0_1_0_start_error_still_reads_as_backend_crashed() {
    let host = test_host(None);
    let backend = host
        .load_backend(&plugin("test-legacy-v0-1"))
        .await
        .unwrap();
    let mut options = sandboxless_session("run-refused");
    options.run.config_json = r#"{"refuse":true}"#.into();
    let refused = backend.open_session(options).await.err().unwrap();
    assert_eq!(refused.failure_kind, Some(FailureKind::BackendCrashed));
    let message = refused.message.unwrap();
    assert!(
        message.contains("refused to start the session: this 0.1.0 backend refuses its config"),
        "{message}"
    );
}

#[tokio::test]
async fn a_0_2_0_config_error_is_config_invalid() {
    let host = test_host(None);
    let backend = host.load_backend(&plugin("shell")).await.unwrap();
    assert_eq!(backend.contract(), ContractVersion::V0_2);
    let mut options = sandboxless_session("run-bad-config");
    options.run.config_json = r#"{"timeout_ms":"soon"}"#.into();
    let refused = backend.open_session(options).await.err().unwrap();
    assert_eq!(refused.status, TerminalStatus::Failed);
    assert_eq!(refused.failure_kind, Some(FailureKind::ConfigInvalid));
    let message = refused.message.unwrap();
    assert!(
        message.contains("timeout_ms"),
        "the setting is named: {message}"
    );
}

#[tokio::test]
async fn an_unknown_contract_version_is_refused_naming_the_versions() {
    let host = test_host(None);
    let path = plugin("test-wrong-version");
    let err = match host.load_backend(&path).await {
        Ok(_) => panic!("a 9.9.9 component loaded"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("was built for aac:plugin@9.9.9"), "{err}");
    assert!(err.contains("it loads aac:plugin 0.2.0, 0.1.0"), "{err}");
    let err = format!("{:#}", host.inspect(&path).await.err().unwrap());
    assert!(err.contains("aac:plugin@9.9.9"), "{err}");
}

/// The agent plugins read a bad setting, at start or in a command's payload, as `config-invalid`
/// naming the setting, not as a crash or an agent error.
#[tokio::test]
async fn the_agent_plugins_name_a_bad_setting_config_invalid() {
    let host = test_host(None);
    for name in ["codex", "claude-code"] {
        let backend = host.load_backend(&plugin(name)).await.unwrap();
        let mut options = sandboxless_session(&format!("run-{name}-bad-start"));
        options.run.config_json = r#"{"idle_timeout_ms":"soon"}"#.into();
        let refused = backend.open_session(options).await.err().unwrap();
        assert_eq!(
            refused.failure_kind,
            Some(FailureKind::ConfigInvalid),
            "{name}"
        );
        let message = refused.message.unwrap();
        assert!(message.contains("idle_timeout_ms"), "{name}: {message}");

        let options = sandboxless_session(&format!("run-{name}-bad-payload"));
        let mut session = backend.open_session(options).await.ok().unwrap();
        let command = CommandInfo {
            command_id: "c1".into(),
            sequence: 1,
            prompt: "hi".into(),
            payload_json: r#"{"timeout_ms":-5}"#.into(),
        };
        let outcome = session.run_turn(command, CancellationToken::new()).await;
        assert_eq!(
            outcome.failure_kind,
            Some(FailureKind::ConfigInvalid),
            "{name}: {outcome:?}"
        );
        let message = outcome.message.unwrap();
        assert!(message.contains("timeout_ms"), "{name}: {message}");
        session.close().await;
    }
}

/// A 0.1.0 materializer gets the bundle as 0.1.0 spells it (`kind` a string) and reads the archive
/// through the 0.1.0 `archive.read`, which still feeds the host's sha256 check.
#[tokio::test]
async fn a_0_1_0_materializer_runs_through_the_adapter() {
    use aac_host::plugin::{Bundle, Integrity, MaterializeOptions};

    let host = test_host(None);
    let path = plugin("test-legacy-materializer-v0-1");
    let materializer = host
        .load_materializer(&path, &Integrity::default())
        .await
        .unwrap();
    assert_eq!(
        host.inspect(&path).await.unwrap().shape.contract,
        ContractVersion::V0_1
    );

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bundle.tar");
    let bytes = vec![7u8; 100_000];
    std::fs::write(&archive, &bytes).unwrap();
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let bundle = |sha256: String| Bundle {
        kind: "archive".into(),
        location: archive.to_string_lossy().into_owned(),
        sha256: Some(sha256),
        size: Some(bytes.len() as u64),
    };

    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let options = MaterializeOptions::default();
    materializer
        .materialize(&bundle(sha256), &workspace, &options)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(workspace.join(".materialized")).unwrap(),
        "archive 100000"
    );

    // The bytes it read through the adapter are the bytes the host verified.
    let other = dir.path().join("ws2");
    std::fs::create_dir(&other).unwrap();
    let failure = materializer
        .materialize(&bundle("0".repeat(64)), &other, &options)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::ResourceBundle);
    assert!(failure.message.contains("sha256"), "{}", failure.message);
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
}

/// `aac-host plugin inspect` (the real binary) says which contract a plugin was built for.
#[test]
fn inspect_shows_the_contract_version() {
    for (name, line) in [
        (
            "test-legacy-v0-1",
            "contract:    aac:plugin@0.1.0 (served through the 0.1.0 adapter)",
        ),
        (
            "shell",
            "contract:    aac:plugin@0.2.1 (the current contract)",
        ),
        // Built from a frozen 0.2.0 WIT: 0.2.1 is additive, so it is served directly.
        (
            "test-materializer-v0-2-0",
            "contract:    aac:plugin@0.2.0 (the current contract)",
        ),
    ] {
        let output = std::process::Command::new(aac_tests::aac_host_binary())
            .args(["--no-cache", "plugin", "inspect"])
            .arg(plugin(name))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.lines().any(|l| l == line), "{name}: {stdout}");
    }
}
