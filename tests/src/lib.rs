//! Shared helpers for the end-to-end tests and benchmarks: plugins built from source, a plugin
//! host with test limits, and the Docker sandbox with the local image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aac_host::local::{DEFAULT_IMAGE, LocalTurn, LocalTurnReport, run_local_turn};
use aac_host::outcome::TurnEvent;
use aac_host::plugin::bindings::backend::aac::plugin::types::RunInfo;
use aac_host::plugin::{PluginHost, PluginHostConfig, PluginLimits, SessionOptions};
use aac_host::sandbox::ProcessLimits;
use aac_host::sandbox::docker::DockerDriver;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod agent_turns;
pub mod bundle;
pub mod child;
pub mod docker_proxy;
pub mod event_registry;
pub mod fault_proxy;
pub mod host_driver;
pub mod interfaces;
pub mod mock_anthropic;
pub mod mock_http;
pub mod mock_openai;
pub mod otlp_collector;
pub mod recording;
pub mod results_env;
pub mod runs;
pub mod transcripts;
pub mod upstream;
pub mod wait;

pub use agent_turns::{
    AgentPlugin, AgentRun, load_agent_plugin, run_agent_turns, run_agent_turns_in,
    run_agent_turns_with,
};

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The path of a plugin built from this repository: from `$AAC_PLUGIN_DIR` (set by `cargo xtask
/// test`), else built now into a target directory of its own.
pub fn plugin(package: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    if let Some(dir) = std::env::var_os("AAC_PLUGIN_DIR") {
        let path = PathBuf::from(dir).join(format!("{package}.wasm"));
        if path.is_file() {
            return path;
        }
    }
    let _guard = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let target_dir = workspace_root().join("target/test-plugins");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("running cargo to build a test plugin");
    assert!(status.success(), "building plugin {package} failed");
    target_dir
        .join("wasm32-wasip2/plugin")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// A loopback port free now (for a process that will listen on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plugin host with tight limits, so misbehaving plugins are caught quickly.
pub fn test_host(cache_dir: Option<&Path>) -> Arc<PluginHost> {
    test_host_with(cache_dir, test_limits())
}

/// [`test_host`] under other limits (start from [`test_limits`]).
pub fn test_host_with(cache_dir: Option<&Path>, limits: PluginLimits) -> Arc<PluginHost> {
    PluginHost::new(PluginHostConfig {
        cache_dir: cache_dir.map(Path::to_path_buf),
        limits,
    })
    .expect("creating the plugin host")
}

/// The tests' plugin limits: small, so a misbehaving plugin is stopped quickly.
pub fn test_limits() -> PluginLimits {
    PluginLimits {
        memory_bytes: 64 << 20,
        call_cpu: Duration::from_secs(1),
        turn_cpu: Duration::from_secs(1),
        // A flood is cut off after ~1 MiB of events whatever the machine's speed.
        turn_output_bytes: 1 << 20,
        ..PluginLimits::default()
    }
}

/// Options for a session with no sandbox (for plugins that start no process). Events are dropped.
pub fn sandboxless_session(run_id: &str) -> SessionOptions {
    let (events, _) = mpsc::unbounded_channel();
    SessionOptions {
        run: RunInfo {
            run_id: run_id.into(),
            runtime: "test".into(),
            workspace_dir: "/workspace".into(),
            config_json: "{}".into(),
        },
        sandbox: None,
        events,
        process_limits: ProcessLimits::default(),
        cancel_grace: Duration::from_secs(1),
        redactor: Default::default(),
        cancel: Default::default(),
    }
}

/// The local Docker engine, with the sandbox image present (`cargo xtask image` builds it).
pub async fn docker() -> DockerDriver {
    let driver = DockerDriver::connect()
        .await
        .expect("a Docker engine must run for this test (cargo xtask test starts one)");
    driver
        .ensure_image(DEFAULT_IMAGE)
        .await
        .expect("the sandbox image must exist (cargo xtask image)");
    driver
}

/// A sandbox of the default image on `workspace` (made ready for the sandbox user), opened by a
/// driver with `runner_id`: what the process-level Docker tests run their execs in.
pub async fn open_sandbox(
    workspace: &Path,
    runner_id: &str,
) -> Arc<dyn aac_host::sandbox::Sandbox> {
    use aac_host::sandbox::SandboxDriver;
    let user = aac_host::local::sandbox_user();
    aac_host::sandbox::pool::prepare_workspace(workspace, &user).unwrap();
    let spec = aac_host::sandbox::SandboxSpec::new(DEFAULT_IMAGE, workspace.to_path_buf(), user);
    docker()
        .await
        .with_runner_id(runner_id)
        .open(&spec)
        .await
        .unwrap()
}

/// A raw process's stdout, stderr and exit code, once its output has ended (within 20 s: tests
/// whose programs leave 60 s sleeps behind fail here if the end waited for them).
pub async fn finish_raw(
    mut process: aac_host::sandbox::RawProcess,
) -> (String, String, Option<i32>) {
    use futures::StreamExt;
    let (mut out, mut err) = (String::new(), String::new());
    let read_all = async {
        while let Some(chunk) = process.output.next().await {
            let chunk = chunk.unwrap();
            let text = String::from_utf8_lossy(&chunk.data).into_owned();
            match chunk.stream {
                aac_host::sandbox::OutputStream::Stdout => out.push_str(&text),
                aac_host::sandbox::OutputStream::Stderr => err.push_str(&text),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read_all)
        .await
        .expect("the output did not end");
    let code = process.control.exit_info().await.unwrap().code;
    (out, err, code)
}

/// A local turn's report and every event it emitted, in order.
pub struct TurnRecord {
    pub report: LocalTurnReport,
    pub events: Vec<TurnEvent>,
}

impl TurnRecord {
    /// The text of every `output.<stream>` event, in order.
    pub fn lines(&self, stream: &str) -> Vec<String> {
        let kind = format!("output.{stream}");
        self.events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.payload["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Runs one turn of the shell plugin in a real container on `workspace`, with default settings.
pub async fn shell_turn(
    host: &Arc<PluginHost>,
    workspace: &Path,
    prompt: &str,
    config: serde_json::Value,
    cancel: CancellationToken,
) -> TurnRecord {
    let turn = LocalTurn {
        workspace: Some(workspace.to_path_buf()),
        config_json: config.to_string(),
        ..LocalTurn::new(plugin("shell"), prompt)
    };
    local_turn(host, turn, cancel).await
}

/// Runs any local turn against the real Docker engine and collects its events.
pub async fn local_turn(
    host: &Arc<PluginHost>,
    turn: LocalTurn,
    cancel: CancellationToken,
) -> TurnRecord {
    let mut driver = docker().await;
    if turn.network == aac_host::sandbox::NetworkMode::Egress {
        // The sandbox takes a network made ready ahead of it (what a serving runner does), so
        // every egress test checks that a ready network is as closed as a fresh one.
        driver = driver.with_ready_egress_networks(1);
        driver.egress_settled().await;
    }
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    });
    let report = run_local_turn(host, &driver, turn, tx, cancel)
        .await
        .expect("the local turn ran");
    // An egress network is torn down in the background; tests look at the host after the turn.
    driver.shutdown_egress().await;
    let events = collector.await.expect("the event collector ended");
    TurnRecord { report, events }
}

/// The `aac-host` binary of this build (`cargo test --workspace` builds it).
pub fn aac_host_binary() -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/aac-host
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().unwrap().parent().unwrap().join("aac-host");
    assert!(
        path.is_file(),
        "{} missing: run the tests through `cargo xtask test`",
        path.display()
    );
    path
}

/// Ids of the containers (in any state) carrying `label` (`key` or `key=value`).
pub async fn containers_with_label(label: &str) -> Vec<String> {
    use bollard::query_parameters::ListContainersOptions;
    let driver = docker().await;
    let filters = std::collections::HashMap::from([("label".to_string(), vec![label.to_string()])]);
    driver
        .client()
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .expect("listing containers")
        .into_iter()
        .filter_map(|container| container.id)
        .collect()
}

/// Containers of a run that still exist.
pub async fn containers_of_run(run_id: &str) -> usize {
    containers_with_label(&format!("dev.aac-host.run={run_id}"))
        .await
        .len()
}

/// How many `docker exec`s the engine created in `container` between `since` and `until`, from
/// its event log.
pub async fn exec_creates(
    container: &str,
    since: std::time::SystemTime,
    until: std::time::SystemTime,
) -> usize {
    engine_events(container, "exec_create", since, until)
        .await
        .len()
}

/// When (ns since the epoch, the engine's clock) the engine logged `event` (`create`, `start`,
/// `exec_create`…) for `container` between `since` and `until`.
pub async fn engine_events(
    container: &str,
    event: &str,
    since: std::time::SystemTime,
    until: std::time::SystemTime,
) -> Vec<i64> {
    use bollard::query_parameters::EventsOptions;
    use futures::StreamExt;
    let stamp = |at: std::time::SystemTime| {
        let at = at.duration_since(std::time::UNIX_EPOCH).unwrap();
        format!("{}.{:09}", at.as_secs(), at.subsec_nanos())
    };
    let filters = std::collections::HashMap::from([
        ("container".to_string(), vec![container.to_string()]),
        ("event".to_string(), vec![event.to_string()]),
    ]);
    let driver = docker().await;
    let mut events = driver.client().events(Some(EventsOptions {
        since: Some(stamp(since)),
        until: Some(stamp(until)),
        filters: Some(filters),
    }));
    let mut times = Vec::new();
    while let Some(logged) = events.next().await {
        let logged = logged.expect("reading the engine's events");
        times.push(logged.time_nano.expect("an event's time"));
    }
    times
}
