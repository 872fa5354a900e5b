//! One helper runs every agent-backend test: a run of several commands through one backend
//! session and one sandbox, the way the runner drives a run. When the runner grows its own entry
//! point, only this file has to move onto it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aac_host::local::{WORKSPACE_DIR, sandbox_user};
use aac_host::outcome::{TurnEvent, TurnOutcome};
use aac_host::plugin::bindings::backend::aac::plugin::types::{CommandInfo, RunInfo};
use aac_host::plugin::{BackendPlugin, PluginHost, SessionOptions};
use aac_host::sandbox::docker::labels;
use aac_host::sandbox::pool::prepare_workspace;
use aac_host::sandbox::{NetworkMode, ProcessLimits, PullPolicy, SandboxDriver, SandboxSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What an agent run did: one outcome per command that ran, and all events in order.
pub struct AgentRun {
    pub run_id: String,
    pub outcomes: Vec<TurnOutcome>,
    pub events: Vec<TurnEvent>,
}

impl AgentRun {
    /// The events of command `n` (1-based), in order.
    pub fn events_of(&self, n: usize) -> Vec<&TurnEvent> {
        let id = command_id(n);
        self.events.iter().filter(|e| e.command_id == id).collect()
    }

    /// The payloads of command `n`'s events of `kind`.
    pub fn payloads(&self, n: usize, kind: &str) -> Vec<serde_json::Value> {
        self.events_of(n)
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.payload.clone())
            .collect()
    }

    /// The kinds of command `n`'s events, in order.
    pub fn kinds(&self, n: usize) -> Vec<String> {
        self.events_of(n).iter().map(|e| e.kind.clone()).collect()
    }
}

fn command_id(n: usize) -> String {
    format!("cmd-{n}")
}

/// Runs `prompts` as successive commands of one run: one sandbox from `image` on `workspace`
/// (bridge network, so the CLI reaches a mock model server on the bridge gateway), one session
/// of the plugin package `plugin` with `config` as the run's backend config. Stops after a turn
/// ends cancelled. The sandbox is removed before this returns.
pub async fn run_agent_turns(
    plugin: &str,
    image: &str,
    config: serde_json::Value,
    workspace: &Path,
    prompts: &[&str],
    cancel: CancellationToken,
) -> AgentRun {
    let backend = load_agent_plugin(plugin).await;
    run_agent_turns_with(&backend, image, config, workspace, prompts, cancel).await
}

/// Loads a backend plugin built from this repository (`plugin` is its package name).
pub async fn load_agent_plugin(plugin: &str) -> BackendPlugin {
    let host: Arc<PluginHost> = crate::test_host(None);
    host.load_backend(&crate::plugin(plugin))
        .await
        .expect("loading the backend plugin")
}

/// [`run_agent_turns`] with a plugin loaded once (benchmarks repeat runs without recompiling).
pub async fn run_agent_turns_with(
    backend: &BackendPlugin,
    image: &str,
    config: serde_json::Value,
    workspace: &Path,
    prompts: &[&str],
    cancel: CancellationToken,
) -> AgentRun {
    let plugin = backend.identity().name.as_str();
    let driver = crate::docker().await;
    driver
        .ensure_image(image)
        .await
        .unwrap_or_else(|err| panic!("{err:#} (cargo xtask images builds it)"));

    let run_id = format!("agents-{}", uuid_like());
    let user = sandbox_user();
    prepare_workspace(workspace, &user).expect("preparing the workspace");
    let mut spec = SandboxSpec::new(image, workspace.canonicalize().unwrap(), user);
    spec.labels.insert(labels::RUN.into(), run_id.clone());
    spec.labels.insert(labels::RUNTIME.into(), plugin.into());
    spec.network = NetworkMode::Bridge;
    spec.pull_policy = PullPolicy::Never;
    spec.expires_at = SystemTime::now() + Duration::from_secs(3600);
    let sandbox = driver.open(&spec).await.expect("opening the sandbox");

    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let options = SessionOptions {
        run: RunInfo {
            run_id: run_id.clone(),
            runtime: plugin.into(),
            workspace_dir: WORKSPACE_DIR.into(),
            config_json: config.to_string(),
        },
        sandbox: Some(sandbox.clone()),
        events: events_tx,
        process_limits: ProcessLimits::default(),
        cancel_grace: Duration::from_secs(10),
        redactor: Default::default(),
    };
    let mut outcomes = Vec::new();
    match backend.open_session(options).await {
        Ok(mut session) => {
            for (index, prompt) in prompts.iter().enumerate() {
                let command = CommandInfo {
                    command_id: command_id(index + 1),
                    sequence: index as u64 + 1,
                    prompt: prompt.to_string(),
                    payload_json: "{}".into(),
                };
                let outcome = session.run_turn(command, cancel.clone()).await;
                let stop = cancel.is_cancelled();
                outcomes.push(outcome);
                if stop {
                    break;
                }
            }
            session.close().await;
        }
        Err(outcome) => outcomes.push(outcome),
    }
    sandbox.remove().await.expect("removing the sandbox");

    let mut events = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        events.push(event);
    }
    AgentRun {
        run_id,
        outcomes,
        events,
    }
}

/// A run id unique across concurrent tests of this process and other processes.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
