//! OpenTelemetry traces through the real binaries: a client's `runs enqueue` under a known
//! `TRACEPARENT`, a real manager, a runner's shell turn in Docker, and a collector stand-in that
//! decodes OTLP/HTTP protobuf. The runner's spans join the client's trace with the documented
//! tree (claim → attempt → command → invoke_agent → sandbox start / turn → exec), no secret is
//! exported, nothing is sent with the variables unset, and a collector that never answers
//! neither fails the run nor holds the exit past the shutdown budget. A real Codex turn's shell
//! calls become `execute_tool` spans of its `invoke_agent` span.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aac_host::manager::protocol::{CreateRun, RunStatus};
use aac_tests::otlp_collector::{Collector, Span};
use aac_tests::runs::{TOKEN, TestManager};
use aac_tests::{aac_host_binary, containers_of_run, plugin};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const API_KEY: &str = "sk-otel-9c1e5b2d46807f3a";
const OTLP_AUTH: &str = "Bearer otlp-hdr-1d9e8c7b6a5f";

fn find<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {:#?}", names(spans)))
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn assert_child(spans: &[Span], child: &Span, parent: &str) {
    let parent = find(spans, parent);
    assert_eq!(
        child.parent, parent.span_id,
        "{} must be a child of {}: {spans:#?}",
        child.name, parent.name
    );
}

/// A config with one runtime whose sandbox gets `API_KEY` from the runner's environment.
fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("aac.toml");
    std::fs::write(
        &path,
        format!(
            r#"[runtimes.traced]
plugin = "{}"
default_version = "1"
versions."1".image = "aac/busybox:latest"
secrets = {{ API_KEY = {{ env = "AAC_TEST_API_KEY" }} }}
"#,
            plugin("shell").display()
        ),
    )
    .unwrap();
    path
}

/// `aac-host` with the OTLP variables of `endpoint` (none for `None`) and a clean environment
/// otherwise.
fn aac_host(dir: &std::path::Path, endpoint: Option<&str>) -> Command {
    let mut cmd = Command::new(aac_host_binary());
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "TRACEPARENT",
    ] {
        cmd.env_remove(var);
    }
    if let Some(endpoint) = endpoint {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint).env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization={OTLP_AUTH}"),
        );
    }
    cmd.env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", dir.join("cache"))
        .env("AAC_TEST_API_KEY", API_KEY)
        .stdin(Stdio::null());
    cmd
}

/// Creates a run, enqueues its command with `runs enqueue` under `traceparent`, and works on it
/// with a one-shot runner; returns the runner's output.
async fn traced_turn(
    manager: &TestManager,
    dir: &std::path::Path,
    endpoint: Option<&str>,
    traceparent: Option<&str>,
) -> (String, Output) {
    let client = manager.client();
    let run = client.create_run(CreateRun::new("traced")).await.unwrap();
    let mut enqueue = aac_host(dir, endpoint);
    enqueue
        .args(["runs", "--manager-url", &manager.url(), "enqueue", &run.id])
        .arg(r#"[ "${#API_KEY}" = 24 ] && echo key-present"#);
    if let Some(traceparent) = traceparent {
        enqueue.env("TRACEPARENT", traceparent);
    }
    let enqueued = enqueue.output().unwrap();
    assert!(enqueued.status.success(), "{enqueued:?}");
    let config = config(dir);
    let runner = aac_host(dir, endpoint)
        .args(["runner", "--config"])
        .arg(&config)
        .args(["--manager-url", &manager.url(), "--run-id", &run.id])
        .args(["--runner-id", "otel-runner", "--one-shot"])
        .output()
        .unwrap();
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Completed, "{runner:?}");
    let events = client.events(&run.id, 0).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.payload.to_string().contains("key-present")),
        "the turn ran with its secret: {events:?}"
    );
    assert_eq!(containers_of_run(&run.id).await, 0);
    (run.id, runner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_spans_join_the_clients_trace_with_the_documented_tree_and_no_secret() {
    let manager = TestManager::start().await;
    let (collector, endpoint) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let (run_id, _) = traced_turn(&manager, dir.path(), Some(&endpoint), Some(&traceparent)).await;

    // The manager kept the context and hands it on with the command and the run.
    let client = manager.client();
    let command = client
        .poll_commands(&run_id, 0, Duration::ZERO)
        .await
        .unwrap();
    let stored = command.commands[0].trace_context.clone().expect("stored");
    assert_eq!(stored.trace_id(), TRACE_ID);
    let run = client.get_run(&run_id).await.unwrap();
    assert_eq!(run.trace_context, Some(stored), "the run adopted it");

    let spans = collector.spans();
    assert!(
        spans.iter().all(|s| s.trace_id == TRACE_ID),
        "every span is in the client's trace: {spans:#?}"
    );
    assert!(spans.iter().all(|s| s.service == "aac-host"), "{spans:#?}");
    let enqueue = find(&spans, "runs enqueue");
    assert_eq!(
        enqueue.parent, CLIENT_SPAN,
        "the CLI's span is TRACEPARENT's child"
    );
    let claim = find(&spans, "claim");
    assert_eq!(
        claim.parent, enqueue.span_id,
        "the claim continues the enqueue's trace"
    );
    assert_eq!(claim.attributes["run"], run_id);
    assert_child(&spans, find(&spans, "attempt"), "claim");
    assert_child(&spans, find(&spans, "command"), "attempt");
    let agent = find(&spans, "invoke_agent traced@1");
    assert_child(&spans, agent, "command");
    assert_eq!(agent.attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(agent.attributes["gen_ai.agent.name"], "traced@1");
    let start = find(&spans, "sandbox start");
    assert_child(&spans, start, "invoke_agent traced@1");
    assert_eq!(start.attributes["warm"], "false");
    assert_child(&spans, find(&spans, "turn"), "invoke_agent traced@1");
    let exec = find(&spans, "exec");
    assert_child(&spans, exec, "turn");
    assert_eq!(exec.attributes["process.executable.name"], "sh");

    // The exporter used the configured header; no secret is in any exported byte.
    let requests = collector.requests();
    assert!(
        requests
            .iter()
            .all(|(headers, _)| headers["authorization"] == OTLP_AUTH)
    );
    for (_, body) in &requests {
        let raw = String::from_utf8_lossy(body);
        for secret in [API_KEY, OTLP_AUTH, "otlp-hdr-1d9e8c7b6a5f", TOKEN] {
            assert!(!raw.contains(secret), "{secret} exported: {spans:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_endpoint_variable_nothing_is_sent_and_the_context_still_travels() {
    let manager = TestManager::start().await;
    let (collector, _endpoint) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let (run_id, runner) = traced_turn(&manager, dir.path(), None, Some(&traceparent)).await;
    assert!(runner.status.success(), "{runner:?}");
    assert!(collector.requests().is_empty());
    // Without an exporter the client passes TRACEPARENT on unchanged.
    let run = manager.client().get_run(&run_id).await.unwrap();
    assert_eq!(run.trace_context.unwrap().traceparent, traceparent);
}

/// A collector that accepts connections and never answers: the run completes and the runner
/// exits within its shutdown budget even though one export may take a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_fails_nothing_and_holds_no_exit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    let manager = TestManager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = manager.client();
    let run = client.create_run(CreateRun::new("traced")).await.unwrap();
    client
        .enqueue(
            &run.id,
            aac_host::manager::protocol::EnqueueCommand {
                id: None,
                prompt: "echo done".into(),
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    let config = config(dir.path());
    let started = Instant::now();
    let runner = aac_host(dir.path(), Some(&endpoint))
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
        .args(["runner", "--config"])
        .arg(&config)
        .args(["--manager-url", &manager.url(), "--run-id", &run.id])
        .args(["--runner-id", "otel-stuck", "--one-shot"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(runner.status.success(), "{runner:?}");
    let stored = client.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Completed);
    assert!(
        !held.lock().unwrap().is_empty(),
        "the exporter did try the collector"
    );
    // Not a speed check: without the bound the exit would wait out the 60 s export timeout.
    assert!(
        took < Duration::from_secs(45),
        "the exit waited for the collector: {took:?}"
    );
    let stderr = String::from_utf8_lossy(&runner.stderr);
    assert!(!stderr.contains("otlp-hdr-1d9e8c7b6a5f"), "{stderr}");
}

/// A runtime of the codex plugin against the mock Responses API on the Docker bridge.
fn codex_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("aac-codex.toml");
    std::fs::write(
        &path,
        format!(
            r#"[runtimes.agent]
plugin = "{}"
default_version = "0.169"
versions."0.169".image = "aac/codex:0.169.0"
pull_policy = "never"
sandbox = {{ network = "bridge" }}
"#,
            plugin("codex").display()
        ),
    )
    .unwrap();
    path
}

/// A real Codex turn whose model asks for two shell commands, one failing: each becomes an
/// `execute_tool shell` span under the turn's `invoke_agent` span, from its `command.started`
/// event's emit time to its `command.completed` one's, with the call id, the exit code and (for
/// the failing one) an error status — and no command text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_turns_shell_calls_are_execute_tool_spans_of_its_invoke_agent_span() {
    let mock = aac_tests::mock_openai::start().await;
    mock.push(aac_tests::mock_openai::shell_call(
        "call_ok",
        "echo tool-ran",
    ));
    mock.push(aac_tests::mock_openai::shell_call(
        "call_bad",
        "echo failing; exit 3",
    ));
    mock.push(aac_tests::mock_openai::text("done"));
    let manager = TestManager::start().await;
    let (collector, endpoint) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = manager.client();
    let run = client
        .create_run(CreateRun {
            config: aac_tests::mock_openai::codex_config(&mock),
            ..CreateRun::new("agent")
        })
        .await
        .unwrap();
    client
        .enqueue(
            &run.id,
            aac_host::manager::protocol::EnqueueCommand {
                id: None,
                prompt: "run two commands".into(),
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    let runner = aac_host(dir.path(), Some(&endpoint))
        .args(["runner", "--config"])
        .arg(codex_config(dir.path()))
        .args(["--manager-url", &manager.url(), "--run-id", &run.id])
        .args(["--runner-id", "otel-codex", "--one-shot"])
        .output()
        .unwrap();
    assert!(runner.status.success(), "{runner:?}");
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Completed,
        "{runner:?}"
    );
    assert_eq!(containers_of_run(&run.id).await, 0);
    let events = client.events(&run.id, 0).await.unwrap();
    let of_kind = |kind: &str| -> Vec<_> { events.iter().filter(|e| e.kind == kind).collect() };
    let (started, completed) = (of_kind("command.started"), of_kind("command.completed"));
    assert_eq!(started.len(), 2, "{events:#?}");
    assert_eq!(completed.len(), 2, "{events:#?}");

    let spans = collector.spans();
    let agent = find(&spans, "invoke_agent agent@0.169");
    let tools: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "execute_tool shell")
        .collect();
    assert_eq!(tools.len(), 2, "{:#?}", names(&spans));
    for (start, end) in started.iter().zip(&completed) {
        let id = start.payload["id"].as_str().expect("codex ids its items");
        assert_eq!(end.payload["id"], id);
        let span = tools
            .iter()
            .find(|s| s.attributes.get("gen_ai.tool.call.id").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no execute_tool span for {id}: {tools:#?}"));
        assert_eq!(span.parent, agent.span_id, "a child of the turn's span");
        assert_eq!(span.trace_id, agent.trace_id);
        assert_eq!(span.attributes["gen_ai.operation.name"], "execute_tool");
        assert_eq!(span.attributes["gen_ai.tool.name"], "shell");
        let ms = |nanos: u64| nanos / 1_000_000;
        assert_eq!(
            Some(ms(span.start_unix_nano)),
            start.emitted_at_ms,
            "{span:#?}"
        );
        assert_eq!(Some(ms(span.end_unix_nano)), end.emitted_at_ms, "{span:#?}");
        let code = end.payload["exit_code"].as_i64().expect("codex reports it");
        assert_eq!(span.attributes["process.exit.code"], code.to_string());
        if code == 0 {
            assert!(!span.attributes.contains_key("error.type"), "{span:#?}");
            assert_ne!(span.status.as_ref().map(|s| s.0), Some(2), "{span:#?}");
        } else {
            assert_eq!(code, 3);
            assert_eq!(span.attributes["error.type"], "3");
            assert_eq!(
                span.status,
                Some((2, "exited with code 3".to_owned())),
                "{span:#?}"
            );
        }
        for value in span.attributes.values() {
            assert!(
                !value.contains("echo") && !value.contains("tool-ran"),
                "no command text in a span's attributes: {span:#?}"
            );
        }
    }
}
