//! One helper runs every agent-backend test: a run of several commands through the embedded
//! manager and a runner, as production does (one backend session and one sandbox per run).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aac_host::manager::protocol::{CreateRun, EnqueueCommand};
use aac_host::outcome::{TurnEvent, TurnOutcome};
use aac_host::plugin::PluginHost;
use aac_host::runner::{Profiles, RunMode, RunProfile, Runner, RunnerConfig};
use aac_host::sandbox::transcript::{RecordedCommand, RecordingDriver, Transcript};
use aac_host::sandbox::{NetworkMode, PullPolicy};
use tokio_util::sync::CancellationToken;

use crate::runs::TestManager;

/// What an agent run did: one outcome per command that ran, and all events in order.
pub struct AgentRun {
    pub run_id: String,
    pub outcomes: Vec<TurnOutcome>,
    pub events: Vec<TurnEvent>,
    /// The run as a transcript `aac-host plugin test` replays without Docker.
    pub transcript: Transcript,
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

/// Runs `prompts` as successive commands of one run, the production way: an embedded manager on
/// loopback, a run with `config` as its backend config and one command per prompt, and a one-shot
/// runner of the plugin package `plugin` working on it — one sandbox from `image` on `workspace`
/// (bridge network, so the CLI reaches a mock model server on the bridge gateway) and one backend
/// session for the whole run. Cancelling `cancel` cancels the run on the manager. Events are read
/// back from the manager. The sandbox is removed before this returns.
pub async fn run_agent_turns(
    plugin: &str,
    image: &str,
    config: serde_json::Value,
    workspace: &Path,
    prompts: &[&str],
    cancel: CancellationToken,
) -> AgentRun {
    let agent = load_agent_plugin(plugin).await;
    run_agent_turns_with(&agent, image, config, workspace, prompts, cancel).await
}

/// A backend plugin ready for runs: its host keeps the compiled artifact in a cache, so repeated
/// runs (benchmarks) do not recompile it.
pub struct AgentPlugin {
    host: Arc<PluginHost>,
    path: PathBuf,
    cache: tempfile::TempDir,
}

/// Loads (compiles once) a backend plugin built from this repository (`plugin` is its package name).
pub async fn load_agent_plugin(plugin: &str) -> AgentPlugin {
    let cache = tempfile::tempdir().unwrap();
    let host: Arc<PluginHost> = crate::test_host(Some(cache.path()));
    let path = crate::plugin(plugin);
    host.load_backend(&path)
        .await
        .expect("loading the backend plugin");
    AgentPlugin { host, path, cache }
}

/// [`run_agent_turns`] with a plugin loaded once.
pub async fn run_agent_turns_with(
    agent: &AgentPlugin,
    image: &str,
    config: serde_json::Value,
    workspace: &Path,
    prompts: &[&str],
    cancel: CancellationToken,
) -> AgentRun {
    let profile = RunProfile {
        image: image.into(),
        network: NetworkMode::Bridge,
        pull_policy: PullPolicy::Never,
        ..agent.profile()
    };
    // Boxed: the nested futures are deep enough to overflow the compiler's layout query.
    Box::pin(run_agent_turns_in(
        agent, profile, config, workspace, prompts, cancel,
    ))
    .await
}

impl AgentPlugin {
    /// A profile of this plugin with the secure defaults (no network).
    pub fn profile(&self) -> RunProfile {
        RunProfile::new(self.path.clone())
    }
}

/// [`run_agent_turns_with`] in `profile` (its image, network, credentials…).
pub async fn run_agent_turns_in(
    agent: &AgentPlugin,
    profile: RunProfile,
    config: serde_json::Value,
    workspace: &Path,
    prompts: &[&str],
    cancel: CancellationToken,
) -> AgentRun {
    let _ = &agent.cache;
    let image = profile.image.clone();
    let driver = crate::docker().await;
    driver
        .ensure_image(&image)
        .await
        .unwrap_or_else(|err| panic!("{err:#} (cargo xtask images builds it)"));

    let manager = TestManager::start().await;
    let client = manager.client();
    let config_json = config.to_string();
    let run = client
        .create_run(CreateRun {
            id: None,
            backend: image.clone(),
            bundle: None,
            config,
            max_attempts: None,
            require_labels: Default::default(),
        })
        .await
        .unwrap();
    for (index, prompt) in prompts.iter().enumerate() {
        client
            .enqueue(
                &run.id,
                EnqueueCommand {
                    id: Some(command_id(index + 1)),
                    prompt: prompt.to_string(),
                    payload: serde_json::json!({}),
                },
            )
            .await
            .unwrap();
    }

    let runner_id = format!("agents-{}", uuid_like());
    let mut runner_config = RunnerConfig::new(runner_id.clone());
    runner_config.mode = RunMode::OneShot;
    runner_config.lease = Duration::from_secs(10);
    runner_config.workspace = Some(workspace.canonicalize().unwrap());
    let driver = RecordingDriver::new(driver.with_runner_id(runner_id));
    let runner = Runner::new(
        client.clone(),
        agent.host.clone(),
        Arc::new(driver.clone()),
        Profiles::Fixed(profile),
        runner_config,
    );
    runner.register().await.expect("registering the runner");
    let canceller = tokio::spawn({
        let client = client.clone();
        let run = run.id.clone();
        async move {
            cancel.cancelled().await;
            client.cancel_run(&run).await.expect("cancelling the run");
        }
    });
    let report = runner
        .run(&run.id)
        .await
        .expect("the runner worked on the run");
    driver.inner().shutdown_egress().await;
    canceller.abort();
    let events = client.events(&run.id, 0).await.unwrap();
    let commands = prompts
        .iter()
        .enumerate()
        .map(|(index, prompt)| RecordedCommand {
            id: command_id(index + 1),
            prompt: prompt.to_string(),
            payload: serde_json::json!({}),
        })
        .collect();
    let transcript = aac_host::replay::transcript(
        &config_json,
        commands,
        driver.processes(),
        &events,
        &report.commands,
    );
    AgentRun {
        run_id: run.id,
        outcomes: report
            .commands
            .into_iter()
            .map(|(_, outcome)| outcome)
            .collect(),
        events,
        transcript,
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
