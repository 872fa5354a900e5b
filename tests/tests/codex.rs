//! The codex plugin driving the real Codex CLI 0.169.0 (image `aac/codex:0.169.0`, built by
//! `cargo xtask images`) against a scripted Responses API on the Docker bridge: messages, shell
//! commands that reach the host's workspace, thread resume with the history sent, model and auth
//! failures, the idle watchdog and cancellation — with no container left behind; every event they
//! emit is checked against the event registry (docs/events.md).

use std::sync::Arc;
use std::time::Duration;

use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_tests::mock_http::{MockServer, Reply};
use aac_tests::{AgentRun, containers_of_run, mock_openai, run_agent_turns};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "aac/codex:0.169.0";
/// Longest wait for something the CLI does on its own (a cold start included).
const WAIT: Duration = Duration::from_secs(120);

fn config(mock: &MockServer, extra: Value) -> Value {
    let mut config = mock_openai::codex_config(mock);
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config
}

async fn run(mock: &MockServer, extra: Value, prompts: &[&str]) -> (AgentRun, tempfile::TempDir) {
    let workspace = tempfile::tempdir().unwrap();
    let run = run_agent_turns(
        "codex",
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
    let mock = mock_openai::start().await;
    mock.push(mock_openai::text("hello from the mock"));
    let (run, _workspace) = run(&mock, json!({}), &["say hello"]).await;

    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    let thread_id = outcome.thread_id.clone().expect("a thread id");
    assert!(outcome.turn_id.is_some(), "{outcome:?}");

    let kinds = run.kinds(1);
    let position = |kind: &str| kinds.iter().position(|k| k == kind);
    assert!(
        position("agent.thread") < position("agent.message")
            && position("agent.message") < position("agent.usage"),
        "events out of order: {kinds:?}"
    );
    assert_eq!(run.payloads(1, "agent.thread")[0]["thread_id"], thread_id);
    assert_eq!(
        run.payloads(1, "agent.message")[0]["text"],
        "hello from the mock"
    );
    assert_eq!(run.payloads(1, "agent.usage")[0]["output_tokens"], 5);

    let requests = mock.model_requests();
    assert_eq!(requests.len(), 1);
    assert!(mock_openai::input_texts(&requests[0].body).contains(&"say hello".to_string()));
    assert_eq!(requests[0].headers["authorization"], "Bearer test-key");
    assert_eq!(requests[0].body["model"], "mock-model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_command_writes_a_file_the_host_sees() {
    let mock = mock_openai::start().await;
    mock.push(mock_openai::shell_call(
        "call_1",
        "echo written-by-codex > out.txt",
    ));
    mock.push(mock_openai::text("the file is written"));
    let (run, workspace) = run(&mock, json!({}), &["write out.txt"]).await;

    assert_eq!(
        run.outcomes[0].status,
        TerminalStatus::Completed,
        "{:?}",
        run.outcomes[0]
    );
    let content = std::fs::read_to_string(workspace.path().join("out.txt")).unwrap();
    assert_eq!(content.trim(), "written-by-codex");

    let started = run.payloads(1, "command.started");
    let completed = run.payloads(1, "command.completed");
    assert_eq!(started.len(), 1, "{:?}", run.kinds(1));
    assert!(
        started[0]["command"]
            .as_str()
            .unwrap()
            .contains("echo written-by-codex > out.txt")
    );
    assert_eq!(completed[0]["exit_code"], 0);
    assert_eq!(completed[0]["id"], started[0]["id"]);
    assert_eq!(
        run.payloads(1, "agent.message")[0]["text"],
        "the file is written"
    );

    // The follow-up request carries the command's result.
    let requests = mock.model_requests();
    assert_eq!(requests.len(), 2);
    let outputs: Vec<&Value> = requests[1].body["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "function_call_output" && item["call_id"] == "call_1")
        .collect();
    assert_eq!(outputs.len(), 1, "no function_call_output for call_1");

    // Replayed without Docker, the plugin emits the same from the CLI's recorded output.
    aac_tests::transcripts::replays_and_ships("codex", "shell-tool-turn", &run.transcript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_command_resumes_the_thread() {
    let mock = mock_openai::start().await;
    mock.push(mock_openai::text("first answer"));
    mock.push(mock_openai::text("second answer"));
    let (run, _workspace) = run(&mock, json!({}), &["first question", "second question"]).await;

    assert_eq!(run.outcomes.len(), 2);
    for outcome in &run.outcomes {
        assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    }
    let first = run.outcomes[0].thread_id.clone().unwrap();
    assert_eq!(run.outcomes[1].thread_id.as_deref(), Some(first.as_str()));
    assert_ne!(run.outcomes[0].turn_id, run.outcomes[1].turn_id);
    assert_eq!(run.payloads(2, "agent.message")[0]["text"], "second answer");

    let requests = mock.model_requests();
    assert_eq!(requests.len(), 2);
    let history = mock_openai::input_texts(&requests[1].body);
    for text in ["first question", "first answer", "second question"] {
        assert!(
            history.iter().any(|t| t.contains(text)),
            "the resumed request lacks {text:?}: {history:?}"
        );
    }
}

async fn assert_fails(reply: Reply, kind: FailureKind) {
    let mock = mock_openai::start().await;
    mock.push(reply);
    let (run, _workspace) = run(&mock, json!({}), &["fail please"]).await;
    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.failure_kind, Some(kind), "{outcome:?}");
    assert!(
        !run.payloads(1, "agent.error").is_empty(),
        "{:?}",
        run.kinds(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_500_is_a_model_error() {
    assert_fails(mock_openai::server_error(), FailureKind::ModelError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_is_a_model_error() {
    assert_fails(mock_openai::broken(), FailureKind::ModelError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_an_auth_error() {
    let refused = Reply::Status(
        401,
        json!({"error": {"message": "invalid key", "type": "invalid_request_error"}}),
    );
    assert_fails(refused, FailureKind::AuthError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_model_trips_the_idle_watchdog() {
    let mock = mock_openai::start().await;
    mock.push(mock_openai::stall());
    let (run, _workspace) = run(&mock, json!({ "idle_timeout_ms": 3000 }), &["hang"]).await;
    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.failure_kind, Some(FailureKind::TurnTimeout));
    assert!(
        outcome
            .message
            .as_deref()
            .unwrap()
            .contains("idle watchdog"),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_turn_leaves_nothing_running() {
    let mock = Arc::new(mock_openai::start().await);
    mock.push(mock_openai::stall());
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
        "codex",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_printing_more_than_256_kib_or_a_1_mb_line_does_not_fail_the_turn() {
    let mock = mock_openai::start().await;
    // ~350 KB over many lines, then one line of 1 MB.
    mock.push(mock_openai::shell_call("call_1", "seq 1 60000"));
    mock.push(mock_openai::shell_call(
        "call_2",
        "dd if=/dev/zero bs=1000000 count=1 2>/dev/null | tr '\\0' z",
    ));
    mock.push(mock_openai::text("printed a lot"));
    let (run, _workspace) = run(&mock, json!({}), &["print a lot"]).await;

    let outcome = &run.outcomes[0];
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    let completed = run.payloads(1, "command.completed");
    assert_eq!(completed.len(), 2, "{:?}", run.kinds(1));
    for event in run.events_of(1) {
        let size = event.kind.len() + event.payload.to_string().len();
        assert!(size <= 256 << 10, "{} of {size} bytes", event.kind);
    }
    for payload in &completed {
        let output = payload["output"].as_str().unwrap_or_default();
        // Whole, or cut with the marker and the size it had.
        if payload["truncated"] == true {
            assert!(payload["original_bytes"].as_u64().unwrap() > 256 << 10);
        } else {
            assert!(output.len() < 256 << 10);
        }
    }
    assert!(
        completed.iter().any(|payload| payload["truncated"] == true),
        "the 1 MB output went through the plugin's bound: {:?}",
        completed
            .iter()
            .map(|p| p.to_string().len())
            .collect::<Vec<_>>()
    );
    assert_eq!(run.payloads(1, "agent.message")[0]["text"], "printed a lot");
}
