//! Runner tests' world: an embedded manager on loopback (restartable on the same port and store)
//! and runners of the shell plugin against the real Docker engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aac_host::manager::protocol::{CreateRun, EnqueueCommand, Run};
use aac_host::manager::server::{ManagerHandle, start_on};
use aac_host::manager::{LeasePolicy, Manager, ManagerClient, ManagerConfig, RetryPolicy};
use aac_host::outcome::TurnEvent;
use aac_host::plugin::PluginHost;
use aac_host::runner::{Profiles, RunMode, RunProfile, Runner, RunnerConfig};
use futures::StreamExt;

use crate::{docker, plugin};

pub const TOKEN: &str = "test-token";

/// An embedded manager with its store in a temp dir.
pub struct TestManager {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    handle: Option<ManagerHandle>,
    policy: LeasePolicy,
}

impl TestManager {
    pub async fn start() -> Self {
        Self::start_with(LeasePolicy::default()).await
    }

    /// A manager with this re-grant gap and default `max_attempts`.
    pub async fn start_with(policy: LeasePolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut manager = Self {
            addr,
            dir,
            handle: None,
            policy,
        };
        manager.serve(listener);
        manager
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let store = self.dir.path().join("manager.redb");
        let config = ManagerConfig::new(TOKEN).with_policy(self.policy);
        let manager = Manager::open(store, config).unwrap();
        self.handle = Some(start_on(listener, manager).unwrap());
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client with the right token and quick retries.
    pub fn client(&self) -> ManagerClient {
        ManagerClient::new(self.url(), TOKEN)
            .unwrap()
            .with_retry(RetryPolicy {
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                deadline: Duration::from_secs(30),
                ..RetryPolicy::default()
            })
    }

    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.unwrap();
        }
    }

    /// Serves again on the same address and store.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// A queued `shell` run with these commands (ids `c1`, `c2`…).
    pub async fn shell_run(&self, commands: &[&str]) -> Run {
        queued_run(&self.client(), "shell", commands).await
    }
}

/// Settings for a test runner: a short lease, one-shot, workspaces in `root`.
pub fn runner_config(id: &str, root: &std::path::Path) -> RunnerConfig {
    let mut config = RunnerConfig::new(id);
    config.lease = Duration::from_secs(3);
    config.mode = RunMode::OneShot;
    config.workspace_root = root.to_path_buf();
    config.cancel_grace = Duration::from_secs(2);
    // Tests look at the workspace after the run.
    config.keep_workspaces = true;
    config
}

/// A registered runner of the shell plugin in the local sandbox image.
pub async fn shell_runner(
    client: ManagerClient,
    host: &Arc<PluginHost>,
    config: RunnerConfig,
) -> Runner {
    let driver = docker().await.with_runner_id(config.runner_id.clone());
    shell_runner_on(client, host, config, Arc::new(driver)).await
}

/// Waits until the run has an event matching `wanted`; returns it.
pub async fn wait_for_event(
    client: &ManagerClient,
    run: &str,
    wanted: impl Fn(&TurnEvent) -> bool,
) -> TurnEvent {
    let mut stream = client.follow_events(run, 0).await.unwrap();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        if wanted(&event) {
            return event;
        }
    }
    panic!("run {run} ended without the awaited event");
}

/// Whether `event` is a line of output with this text.
pub fn is_line(event: &TurnEvent, text: &str) -> bool {
    event.kind.starts_with("output.") && event.payload["text"] == text
}

/// A registered runner of the shell plugin on any sandbox driver.
pub async fn shell_runner_on(
    client: ManagerClient,
    host: &Arc<PluginHost>,
    config: RunnerConfig,
    driver: Arc<dyn aac_host::sandbox::SandboxDriver>,
) -> Runner {
    let runner = unregistered_shell_runner_on(client, host, config, driver);
    runner.register().await.expect("registering the runner");
    runner
}

/// A runner of the shell plugin on any sandbox driver that has not registered yet.
pub fn unregistered_shell_runner_on(
    client: ManagerClient,
    host: &Arc<PluginHost>,
    config: RunnerConfig,
    driver: Arc<dyn aac_host::sandbox::SandboxDriver>,
) -> Runner {
    Runner::new(
        client,
        host.clone(),
        driver,
        Profiles::Fixed(RunProfile::new(plugin("shell"))),
        config,
    )
}

/// Every stored event's seq, in order, is 1..=n with no gap or repeat.
pub async fn assert_contiguous_events(client: &ManagerClient, run: &str) -> Vec<String> {
    let events = client.events(run, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "event sequence of run {run}");
    events
        .iter()
        .filter(|e| e.kind.starts_with("output."))
        .map(|e| e.payload["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A queued run of `backend` with these commands (ids `c1`, `c2`…).
pub async fn queued_run(client: &ManagerClient, backend: &str, commands: &[&str]) -> Run {
    let run = client
        .create_run(CreateRun {
            id: None,
            backend: backend.into(),
            bundle: None,
            config: serde_json::json!({}),
            max_attempts: None,
            require_labels: Default::default(),
        })
        .await
        .unwrap();
    for (i, prompt) in commands.iter().enumerate() {
        client
            .enqueue(
                &run.id,
                EnqueueCommand {
                    id: Some(format!("c{}", i + 1)),
                    prompt: prompt.to_string(),
                    payload: serde_json::json!({}),
                },
            )
            .await
            .unwrap();
    }
    run
}
