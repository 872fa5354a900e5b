//! aac-sandbox owns what the plugin host needs from a sandbox: the driver traits
//! ([`SandboxDriver`], [`Sandbox`], [`ProcessControl`]), the spec types, the driver-independent
//! process policy ([`ProcessHandle`]), warm pools ([`pool`]) and session lifetimes ([`lifetime`]).
//! A driver lives in its own crate (`aac-sandbox-docker`); this one must not depend on bollard,
//! wasmtime or the manager.
//!
//! Sandboxes: where a session's processes run. The plugin asks for a command line; the sandbox spec
//! (chosen by the operator, never by the plugin) decides image, mounts, user and network.
//!
//! [`SandboxDriver`] opens a [`Sandbox`] per session; [`Sandbox::exec`] starts a raw process that
//! [`ProcessHandle`] wraps with what every driver needs: ordered output, timeouts, kill escalation
//! and cancellation.

pub mod lifetime;
pub mod pool;
mod process;
pub mod transcript;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

pub use process::{ProcessHandle, ProcessLimits};

/// What the operator decided a session's sandbox looks like.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub image: String,
    /// The host directory mounted as the workspace.
    pub workspace_host_dir: PathBuf,
    /// Where the workspace appears inside the sandbox.
    pub workspace_dir: String,
    /// `uid:gid` the processes run as; never root.
    pub user: String,
    /// `$HOME` inside the sandbox: a private tmpfs owned by `user`.
    pub home_dir: String,
    /// Labels put on the container (besides the ones the driver adds) so orphans can be found.
    pub labels: BTreeMap<String, String>,
    /// Environment every process in the sandbox gets (before the exec request's own).
    pub env: Vec<(String, String)>,
    pub network: NetworkMode,
    /// What an `egress` sandbox may reach, and where its proxy's verdicts go (`None` with any other
    /// network mode; an `egress` sandbox without one reaches nothing).
    pub egress: Option<EgressSpec>,
    pub limits: ResourceLimits,
    pub pull_policy: PullPolicy,
    /// The OCI runtime the engine runs the container with (`runsc` for gVisor); the engine's
    /// default when `None`.
    pub runtime: Option<String>,
    /// After this the container is fair game for any host's reaper.
    pub expires_at: SystemTime,
}

impl SandboxSpec {
    /// A spec with the secure defaults for `image` on `workspace_host_dir`.
    pub fn new(image: impl Into<String>, workspace_host_dir: PathBuf, user: String) -> Self {
        Self {
            image: image.into(),
            workspace_host_dir,
            workspace_dir: "/workspace".into(),
            user,
            home_dir: "/home/aac".into(),
            labels: BTreeMap::new(),
            env: Vec::new(),
            network: NetworkMode::None,
            egress: None,
            limits: ResourceLimits::default(),
            pull_policy: PullPolicy::IfNotPresent,
            runtime: None,
            expires_at: SystemTime::now() + Duration::from_secs(8 * 3600),
        }
    }
}

/// The egress policy of a sandbox in [`NetworkMode::Egress`].
#[derive(Clone, Debug)]
pub struct EgressSpec {
    pub allow: Arc<aac_egress::Allowlist>,
    /// Receives one event per connection the proxy allowed or denied.
    pub events: aac_egress::EventSink,
    pub resolver: aac_egress::Resolver,
    /// Secrets the proxy's gateway adds on the way out (the sandbox holds placeholders).
    pub credentials: Arc<aac_egress::Credentials>,
}

/// The network a sandbox gets. Written `none`, `bridge`, `per-run`, `egress` in `aac.toml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// No network at all (the default).
    #[default]
    None,
    /// Docker's default bridge, shared with other containers.
    Bridge,
    /// A bridge network of its own, created with the sandbox and removed with it.
    PerRun,
    /// An internal network of its own (no route out); the only way out is the host's egress
    /// proxy, which lets through only the allowlisted names ([`EgressSpec`]).
    Egress,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Bridge => "bridge",
            NetworkMode::PerRun => "per-run",
            NetworkMode::Egress => "egress",
        }
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        [
            NetworkMode::None,
            NetworkMode::Bridge,
            NetworkMode::PerRun,
            NetworkMode::Egress,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == value)
        .ok_or_else(|| {
            format!("unknown network `{value}`: expected none, bridge, per-run or egress")
        })
    }
}

/// cgroup limits of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResourceLimits {
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<i64>,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            cpus: Some(2.0),
            memory_bytes: Some(2 << 30),
            pids: Some(512),
        }
    }
}

/// When the driver may pull the image. Written `never`, `if-not-present`, `always` in `aac.toml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Only local images; a missing one is `image-unavailable`.
    Never,
    /// Pull when the image is not present locally.
    #[default]
    IfNotPresent,
    /// Pull before every sandbox (the local copy serves if the registry cannot be reached).
    Always,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Never => "never",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Always => "always",
        }
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        [
            PullPolicy::Never,
            PullPolicy::IfNotPresent,
            PullPolicy::Always,
        ]
        .into_iter()
        .find(|policy| policy.as_str() == value)
        .ok_or_else(|| {
            format!("unknown pull policy `{value}`: expected never, if-not-present or always")
        })
    }
}

/// One process to start inside a sandbox.
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub stdin_piped: bool,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub data: Bytes,
}

/// Why the host killed a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    Timeout,
    IdleTimeout,
    Cancelled,
    Requested,
}

impl KillReason {
    pub fn as_str(self) -> &'static str {
        match self {
            KillReason::Timeout => "timeout",
            KillReason::IdleTimeout => "idle-timeout",
            KillReason::Cancelled => "cancelled",
            KillReason::Requested => "requested",
        }
    }
}

/// How a process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub killed: Option<KillReason>,
    pub oom_killed: bool,
    /// Set when the sandbox failed while the process ran (daemon gone, container removed).
    pub sandbox_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Why a sandbox could not be opened, classified for the failure taxonomy.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The image is missing and the pull policy forbids or failed to fetch it.
    #[error("{0}")]
    ImageUnavailable(String),
    /// The engine failed or does not answer.
    #[error(transparent)]
    Engine(#[from] anyhow::Error),
}

impl OpenError {
    pub fn failure_kind(&self) -> aac_protocol::outcome::FailureKind {
        match self {
            OpenError::ImageUnavailable(_) => aac_protocol::outcome::FailureKind::ImageUnavailable,
            OpenError::Engine(_) => aac_protocol::outcome::FailureKind::SandboxLost,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid exec request: {0}")]
    InvalidRequest(String),
    #[error("could not start the process: {0}")]
    SpawnFailed(String),
    #[error("the sandbox is gone: {0}")]
    SandboxLost(String),
}

/// A process as a driver started it; [`ProcessHandle`] adds the policy on top.
pub struct RawProcess {
    pub output: BoxStream<'static, anyhow::Result<OutputChunk>>,
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub control: Arc<dyn ProcessControl>,
}

/// Driver-specific control of a started process.
#[async_trait]
pub trait ProcessControl: Send + Sync {
    /// Sends `signal` to the process and every process it started.
    async fn signal(&self, signal: Signal) -> anyhow::Result<()>;
    /// The exit status, once the output streams have ended.
    async fn exit_info(&self) -> anyhow::Result<ExitInfo>;
}

/// A session's sandbox.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// A short id for logs (the container id).
    fn id(&self) -> &str;
    async fn exec(&self, spec: ExecSpec) -> Result<RawProcess, ExecError>;
    /// Removes the sandbox and everything running in it. Idempotent.
    async fn remove(&self) -> anyhow::Result<()>;
    /// Whether the sandbox still runs; `Err` when the engine cannot tell.
    async fn is_alive(&self) -> anyhow::Result<bool>;
    /// Where an `egress` sandbox reaches the host's proxy and credential gateway (`None` for other
    /// network modes).
    fn egress_gateway(&self) -> Option<std::net::SocketAddr> {
        None
    }
    /// Prepares whatever makes the next exec fast (a warm pool calls it before hand-out).
    async fn warm_up(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Opens sandboxes.
#[async_trait]
pub trait SandboxDriver: Send + Sync {
    async fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn Sandbox>, OpenError>;
}

/// The `uid:gid` sandbox processes run as: the caller's own, or 1000:1000 when the caller is root
/// (a sandbox never runs as root).
pub fn sandbox_user() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(meta) if meta.uid() != 0 => format!("{}:{}", meta.uid(), meta.gid()),
        _ => "1000:1000".into(),
    }
}
