//! The claude-code plugin driving the real Claude Code CLI 2.1.330 (image
//! `aac/claude-code:2.1.330`, built by `cargo xtask images`) against a scripted Messages API on the
//! Docker bridge: messages, Bash commands that reach the host's workspace, session resume with the
//! history sent, model failures, the idle watchdog for a CLI that never prints its result line,
//! and cancellation — with no container left behind; every event it emits is checked against the
//! event registry (docs/events.md).

use std::sync::Arc;
use std::time::Duration;

use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_tests::mock_http::{MockServer, Reply};
use aac_tests::{AgentRun, containers_of_run, mock_anthropic, run_agent_turns};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "aac/claude-code:2.1.330";
/// Longest wait for something the CLI does on its own (a cold start included).
const WAIT: Duration = Duration::from_secs(120);

fn config(mock: &MockServer, extra: Value) -> Value {
    let mut config = json!({
        "base_url": mock.base_url(),
        "model": "claude-mock",
        "env": { "ANTHROPIC_API_KEY": "test-key" },
        // A safety net only: every test here ends well before it.
        "idle_timeout_ms": 120_000,
    });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config
}

async fn run(mock: &MockServer, extra: Value, prompts: &[&str]) -> (AgentRun, tempfile::TempDir) {
    let workspace = tempfile::tempdir().unwrap();
    let run = run_agent_turns(
        "claude-code",
        IMAGE,
        config(mock, extra),
        workspace.path(),
        prompts,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        containers_of_run(&run.run_id).await,
        0,
        "container left behind"
    );
    // Every event of every turn here is of a registered kind with a matching payload.
    aac_tests::event_registry::assert_registered(&run.events);
    (run, workspace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_message_turn() {
    let mock = mock_anthropic::start().await;
    mock.push(mock_anthropic::text("hello from the mock"));
    let (run, _workspace) = run(&mock, json!({}), &["say hello"]).await;

    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    let session_id = outcome.thread_id.clone().expect("a session id");
    assert!(outcome.turn_id.is_some(), "{outcome:?}");

    let kinds = run.kinds(1);
    let position = |kind: &str| kinds.iter().position(|k| k == kind);
    assert!(
        position("agent.thread") < position("agent.message")
            && position("agent.message") < position("agent.result"),
        "events out of order: {kinds:?}"
    );
    assert_eq!(run.payloads(1, "agent.thread")[0]["thread_id"], session_id);
    assert_eq!(
        run.payloads(1, "agent.message")[0]["text"],
        "hello from the mock"
    );
    assert_eq!(
        run.payloads(1, "agent.result")[0]["result"],
        "hello from the mock"
    );

    let requests = mock.model_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        mock_anthropic::message_texts(&requests[0].body)
            .iter()
            .any(|t| t.contains("say hello"))
    );
    assert_eq!(requests[0].headers["x-api-key"], "test-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bash_command_writes_a_file_the_host_sees() {
    let mock = mock_anthropic::start().await;
    mock.push(mock_anthropic::bash_call(
        "toolu_1",
        "echo written-by-claude > out.txt",
    ));
    mock.push(mock_anthropic::text("the file is written"));
    let (run, workspace) = run(&mock, json!({}), &["write out.txt"]).await;

    assert_eq!(
        run.outcomes[0].status,
        TerminalStatus::Completed,
        "{:?}",
        run.outcomes[0]
    );
    let content = std::fs::read_to_string(workspace.path().join("out.txt")).unwrap();
    assert_eq!(content.trim(), "written-by-claude");

    let started = run.payloads(1, "command.started");
    let completed = run.payloads(1, "command.completed");
    assert_eq!(started.len(), 1, "{:?}", run.kinds(1));
    assert_eq!(started[0]["command"], "echo written-by-claude > out.txt");
    assert_eq!(completed[0]["id"], "toolu_1");
    assert_eq!(completed[0]["is_error"], false);

    // The follow-up request carries the tool's result.
    let requests = mock.model_requests();
    assert_eq!(requests.len(), 2);
    let results = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|block| block["type"] == "tool_result" && block["tool_use_id"] == "toolu_1")
        .count();
    assert_eq!(results, 1, "no tool_result for toolu_1");

    // Replayed without Docker, the plugin emits the same from the CLI's recorded output.
    aac_tests::transcripts::replays_and_ships("claude-code", "bash-tool-turn", &run.transcript)
        .await;
}

/// Claude Code's Write tool becomes `file.changed` in the registry's shape, the one codex emits
/// for its file changes: `{id, changes: [{path, kind}], status}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_tool_is_a_file_changed_event_shaped_like_codexs() {
    let mock = mock_anthropic::start().await;
    mock.push(mock_anthropic::tool_call(
        "toolu_w",
        "Write",
        json!({ "file_path": "/workspace/new.txt", "content": "made by Write\n" }),
    ));
    mock.push(mock_anthropic::text("written"));
    let (run, workspace) = run(&mock, json!({}), &["create new.txt"]).await;

    assert_eq!(
        run.outcomes[0].status,
        TerminalStatus::Completed,
        "{:?}",
        run.outcomes[0]
    );
    let content = std::fs::read_to_string(workspace.path().join("new.txt")).unwrap();
    assert_eq!(content, "made by Write\n");
    let changed = run.payloads(1, "file.changed");
    assert_eq!(changed.len(), 1, "{:?}", run.kinds(1));
    assert_eq!(changed[0]["id"], "toolu_w");
    assert_eq!(
        changed[0]["changes"],
        json!([{ "path": "/workspace/new.txt", "kind": "add" }])
    );
    assert_eq!(changed[0]["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_command_resumes_the_session() {
    let mock = mock_anthropic::start().await;
    mock.push(mock_anthropic::text("first answer"));
    mock.push(mock_anthropic::text("second answer"));
    let (run, _workspace) = run(&mock, json!({}), &["first question", "second question"]).await;

    assert_eq!(run.outcomes.len(), 2);
    for outcome in &run.outcomes {
        assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    }
    let first = run.outcomes[0].thread_id.clone().unwrap();
    assert_eq!(run.outcomes[1].thread_id.as_deref(), Some(first.as_str()));
    assert_ne!(run.outcomes[0].turn_id, run.outcomes[1].turn_id);

    let requests = mock.model_requests();
    assert_eq!(requests.len(), 2);
    let history = mock_anthropic::message_texts(&requests[1].body);
    for text in ["first question", "first answer", "second question"] {
        assert!(
            history.iter().any(|t| t.contains(text)),
            "the resumed request lacks {text:?}: {history:?}"
        );
    }
}

async fn assert_fails(replies: Vec<Reply>, kind: FailureKind) {
    let mock = mock_anthropic::start().await;
    for reply in replies {
        mock.push(reply);
    }
    let (run, _workspace) = run(&mock, json!({}), &["fail please"]).await;
    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.failure_kind, Some(kind), "{outcome:?}");
    let result = &run.payloads(1, "agent.result")[0];
    assert_eq!(result["is_error"], true, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_500_is_a_model_error() {
    assert_fails(
        vec![mock_anthropic::server_error()],
        FailureKind::ModelError,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_is_a_model_error() {
    // Claude retries a cut stream once without streaming; that retry breaks too.
    assert_fails(
        vec![mock_anthropic::broken(), mock_anthropic::broken()],
        FailureKind::ModelError,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_an_auth_error() {
    let refused = Reply::Status(
        401,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
    );
    assert_fails(vec![refused], FailureKind::AuthError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_model_without_result_line_trips_the_idle_watchdog() {
    let mock = mock_anthropic::start().await;
    mock.push(mock_anthropic::stall());
    let (run, _workspace) = run(&mock, json!({ "idle_timeout_ms": 3000 }), &["hang"]).await;
    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.failure_kind, Some(FailureKind::TurnTimeout));
    let message = outcome.message.as_deref().unwrap();
    assert!(
        message.contains("idle watchdog") && message.contains("no result line"),
        "{outcome:?}"
    );
    assert!(run.payloads(1, "agent.result").is_empty());
    assert_eq!(
        run.payloads(1, "process.exited")[0]["kill_reason"],
        "idle-timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_turn_leaves_nothing_running() {
    let mock = Arc::new(mock_anthropic::start().await);
    mock.push(mock_anthropic::stall());
    let cancel = CancellationToken::new();
    // Cancel once the CLI is waiting on the model, mid-turn.
    let canceller = tokio::spawn({
        let (mock, cancel) = (mock.clone(), cancel.clone());
        async move {
            let asked = || !mock.model_requests().is_empty();
            aac_tests::wait::until_sync("the CLI's first model request", WAIT, asked).await;
            cancel.cancel();
        }
    });
    let workspace = tempfile::tempdir().unwrap();
    let run = run_agent_turns(
        "claude-code",
        IMAGE,
        config(&mock, json!({})),
        workspace.path(),
        &["hang", "never runs"],
        cancel,
    )
    .await;
    canceller.await.unwrap();

    assert_eq!(run.outcomes.len(), 1, "the run stops at the cancelled turn");
    assert_eq!(run.outcomes[0].status, TerminalStatus::Cancelled);
    let exited = run.payloads(1, "process.exited");
    assert_eq!(exited[0]["kill_reason"], "cancelled", "{exited:?}");
    assert_eq!(containers_of_run(&run.run_id).await, 0);
    aac_tests::event_registry::assert_registered(&run.events);
}
