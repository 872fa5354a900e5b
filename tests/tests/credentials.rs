//! Credentials that never enter the sandbox: real Codex and real Claude Code, in an `egress`
//! sandbox whose profile binds the model API key to the mock model server (on loopback, allowed as
//! private), complete a tool turn while the host's gateway adds the key. The mock receives the real
//! key; `docker inspect`, `env` and `/proc/*/environ` inside the sandbox, the sandbox's writable
//! files, the run's events and the host's logs at trace level show only the placeholder. A gateway
//! request for a name with no binding is a `network.denied` event.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aac_egress::credential::PLACEHOLDER;
use aac_egress::{Credential, Credentials, HeaderTemplate, Upstream};
use aac_host::outcome::TerminalStatus;
use aac_host::runner::RunProfile;
use aac_host::sandbox::{NetworkMode, PullPolicy};
use aac_tests::mock_http::MockServer;
use aac_tests::{AgentRun, containers_of_run, mock_anthropic, mock_openai};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Everything this test binary logged, at trace level.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        logs().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the trace-level subscriber once (what `AAC_LOG=trace` gives the binary).
fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // The host's own tracing at every level; not the `log` records of the compiler
        // (cranelift's trace output would take minutes and holds no secret).
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// A fresh secret, and a grep pattern matching it that does not match itself (so a probe's own
/// command line is not a hit).
fn secret(tag: &str) -> (String, String) {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let secret = format!("sk-live-{tag}-{nanos}");
    let pattern = secret.replacen("sk-live-", "sk-liv[e]-", 1);
    (secret, pattern)
}

/// A shell command for the agent's tool call: writes the sandbox's view of its environment into
/// the workspace, and the writable files and process environments/command lines holding the
/// secret into `found.txt`.
fn probe(pattern: &str) -> String {
    format!(
        "env > /workspace/env.txt; \
         for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; echo; done > /workspace/environ.txt 2>/dev/null; \
         grep -rl '{pattern}' /workspace /home /tmp /proc/[0-9]*/environ /proc/[0-9]*/cmdline > /workspace/found.txt 2>/dev/null; \
         echo probed"
    )
}

/// An egress profile of `plugin` whose one credential `name` goes to `upstream` via `header`.
async fn profile(
    plugin: &aac_tests::AgentPlugin,
    image: &str,
    name: &str,
    upstream: String,
    header: &str,
    secret: &str,
) -> RunProfile {
    let credential = Credential::new(
        name,
        Upstream::parse(&upstream).unwrap(),
        &HeaderTemplate::parse(header).unwrap(),
        secret,
        true,
    )
    .unwrap();
    RunProfile {
        // Unique, so the inspector below finds exactly this run's container.
        runtime: format!("creds-{}", secret.rsplit('-').next().unwrap()),
        image: image.into(),
        network: NetworkMode::Egress,
        pull_policy: PullPolicy::Never,
        credentials: Arc::new(Credentials::new([credential])),
        ..plugin.profile()
    }
}

/// `docker inspect` of every container of `runtime`, as JSON text, taken while the run lasts.
fn inspect_while_running(
    runtime: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let docker = aac_tests::docker().await;
        let mut seen = Vec::new();
        while !stop.is_cancelled() {
            for id in
                aac_tests::containers_with_label(&format!("dev.aac-host.runtime={runtime}")).await
            {
                if let Ok(inspected) = docker
                    .client()
                    .inspect_container(
                        &id,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    )
                    .await
                {
                    seen.push(serde_json::to_string(&inspected).unwrap());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seen
    })
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// What must hold after a turn with a bound credential `name` holding `secret`.
fn assert_the_secret_stayed_outside(
    run: &AgentRun,
    workspace: &Path,
    inspected: &[String],
    name: &str,
    secret: &str,
) {
    assert_eq!(run.outcomes.len(), 1);
    assert_eq!(
        run.outcomes[0].status,
        TerminalStatus::Completed,
        "{:?}",
        run.outcomes[0]
    );
    let read = |file: &str| {
        std::fs::read_to_string(workspace.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    // The agent's tool call ran and saw only the placeholder.
    let env = read("env.txt");
    assert!(env.contains(&format!("{name}={PLACEHOLDER}")), "env: {env}");
    assert!(read("environ.txt").contains(&format!("{name}={PLACEHOLDER}")));
    assert_eq!(
        read("found.txt"),
        "",
        "files holding the secret inside the sandbox"
    );
    assert_eq!(files_containing(workspace, secret), Vec::<String>::new());

    assert!(!inspected.is_empty(), "the container was never inspected");
    for inspect in inspected {
        assert!(
            inspect.contains(&format!("{name}={PLACEHOLDER}")),
            "{inspect}"
        );
        assert!(!inspect.contains(secret), "docker inspect shows the secret");
    }

    let events = serde_json::to_string(
        &run.events
            .iter()
            .map(|e| (&e.kind, &e.payload))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!events.contains(secret), "an event holds the secret");
    let through_gateway = run
        .events
        .iter()
        .filter(|e| e.kind == "network.allowed" && e.payload["credential"] == name)
        .count();
    assert!(
        through_gateway >= 2,
        "model requests through the gateway: {events}"
    );
    aac_tests::event_registry::assert_registered(&run.events);

    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(logs.contains("egress"), "no trace logs were captured");
    assert!(!logs.contains(secret), "a log line holds the secret");
}

/// Runs one prompt of `plugin` in `profile`, inspecting its container meanwhile.
async fn run_turn(
    plugin: &aac_tests::AgentPlugin,
    profile: RunProfile,
    config: serde_json::Value,
    workspace: &Path,
) -> (AgentRun, Vec<String>) {
    let stop = CancellationToken::new();
    let inspector = inspect_while_running(profile.runtime.clone(), stop.clone());
    let run = Box::pin(aac_tests::run_agent_turns_in(
        plugin,
        profile,
        config,
        workspace,
        &["check your environment"],
        CancellationToken::new(),
    ))
    .await;
    stop.cancel();
    let inspected = inspector.await.unwrap();
    assert_eq!(
        containers_of_run(&run.run_id).await,
        0,
        "container left behind"
    );
    (run, inspected)
}

fn assert_requests_carry(mock: &MockServer, header: &str, value: &str) {
    let requests = mock.requests();
    assert!(requests.len() >= 2, "{requests:#?}");
    for request in requests {
        assert_eq!(
            request.headers.get(header).and_then(|v| v.to_str().ok()),
            Some(value),
            "{header} of {}",
            request.path
        );
        for (name, value) in &request.headers {
            assert!(
                !value.to_str().unwrap_or("").contains(PLACEHOLDER),
                "placeholder in {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_completes_a_tool_turn_with_the_key_added_by_the_host() {
    capture_logs();
    let (secret, pattern) = secret("codex");
    let mock =
        MockServer::start("127.0.0.1".parse().unwrap(), &[mock_openai::RESPONSES_PATH]).await;
    mock.push(mock_openai::shell_call("call_1", &probe(&pattern)));
    mock.push(mock_openai::text("checked"));
    let plugin = aac_tests::load_agent_plugin("codex").await;
    let profile = profile(
        &plugin,
        "aac/codex:0.169.0",
        "OPENAI_API_KEY",
        format!("{}/v1", mock.base_url()),
        aac_host::config::DEFAULT_HEADER,
        &secret,
    )
    .await;
    let workspace = tempfile::tempdir().unwrap();
    // No base_url: the provider's key is bound, so the plugin points it at the gateway.
    let config = json!({
        "model": "mock-model",
        "provider": { "env_key": "OPENAI_API_KEY", "request_max_retries": 0, "stream_max_retries": 0 },
        "idle_timeout_ms": 120_000,
    });
    let (run, inspected) = run_turn(&plugin, profile, config, workspace.path()).await;
    assert_requests_carry(&mock, "authorization", &format!("Bearer {secret}"));
    assert_the_secret_stayed_outside(
        &run,
        workspace.path(),
        &inspected,
        "OPENAI_API_KEY",
        &secret,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_completes_a_tool_turn_with_the_key_added_by_the_host() {
    capture_logs();
    let (secret, pattern) = secret("claude");
    let mock = MockServer::start(
        "127.0.0.1".parse().unwrap(),
        &[mock_anthropic::MESSAGES_PATH],
    )
    .await;
    mock.push(mock_anthropic::bash_call("toolu_1", &probe(&pattern)));
    mock.push(mock_anthropic::text("checked"));
    let plugin = aac_tests::load_agent_plugin("claude-code").await;
    let profile = profile(
        &plugin,
        "aac/claude-code:2.1.330",
        "ANTHROPIC_API_KEY",
        mock.base_url(),
        "x-api-key: {secret}",
        &secret,
    )
    .await;
    let workspace = tempfile::tempdir().unwrap();
    let config = json!({ "model": "claude-mock", "idle_timeout_ms": 120_000 });
    let (run, inspected) = run_turn(&plugin, profile, config, workspace.path()).await;
    assert_requests_carry(&mock, "x-api-key", &secret);
    assert_the_secret_stayed_outside(
        &run,
        workspace.path(),
        &inspected,
        "ANTHROPIC_API_KEY",
        &secret,
    );
}
