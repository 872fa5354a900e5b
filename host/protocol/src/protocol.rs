//! Protocol v1: the JSON bodies exchanged under `/v1`. See `docs/protocol.md` and `docs/openapi.yaml`.
//!
//! Times are milliseconds since the Unix epoch (`*_ms`). Statuses and failure kinds are kebab-case,
//! the taxonomy of [`crate::outcome`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};

/// Path prefix of every endpoint.
pub const API_PREFIX: &str = "/v1";
/// Header carrying the lease token on every runner-side mutation.
pub const LEASE_TOKEN_HEADER: &str = "x-lease-token";
/// Content type of the event stream.
pub const NDJSON: &str = "application/x-ndjson";

/// Lease length used when a claim names none.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;
/// Longest lease a manager grants.
pub const MAX_LEASE_SECONDS: u64 = 3600;
/// Longest long-poll wait a manager honours.
pub const MAX_WAIT_SECONDS: u64 = 60;
/// Attempts a run gets when neither the run nor the manager names a number.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Most attempts a run may ask for.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// The largest request body the manager reads (2 MiB); a larger one is `413 payload-too-large`.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// Where a run is in its life. `queued` also covers a run whose runner's lease expired: it can be
/// claimed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Blocked,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Blocked,
        RunStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Blocked => "blocked",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl From<TerminalStatus> for RunStatus {
    fn from(s: TerminalStatus) -> Self {
        match s {
            TerminalStatus::Completed => RunStatus::Completed,
            TerminalStatus::Failed => RunStatus::Failed,
            TerminalStatus::Blocked => RunStatus::Blocked,
            TerminalStatus::Cancelled => RunStatus::Cancelled,
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown status `{text}`: expected one of {}",
                    known.join(", ")
                )
            })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a command (one agent turn) is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// Enqueued, not yet acknowledged by a runner.
    Queued,
    /// A runner acknowledged it and is running the turn.
    Acked,
    Completed,
    Failed,
    Blocked,
    Cancelled,
}

impl CommandStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, CommandStatus::Queued | CommandStatus::Acked)
    }
}

impl From<TerminalStatus> for CommandStatus {
    fn from(s: TerminalStatus) -> Self {
        match s {
            TerminalStatus::Completed => CommandStatus::Completed,
            TerminalStatus::Failed => CommandStatus::Failed,
            TerminalStatus::Blocked => CommandStatus::Blocked,
            TerminalStatus::Cancelled => CommandStatus::Cancelled,
        }
    }
}

/// A reference to the files a run starts from, materialized into its workspace once per run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// How the bundle is fetched: `archive` (a local tar, `location` is its path) or `http` (a URL);
    /// see docs/bundles.md.
    pub kind: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A run as the manager reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub status: RunStatus,
    /// Backend profile, e.g. `shell` or `codex@0.169`.
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    #[serde(default)]
    pub config: serde_json::Value,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The runner holding (or that last held) the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at_ms: Option<u64>,
    /// A client asked for the run to be cancelled; the runner sees it on its next heartbeat.
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Highest event sequence number stored (0: none).
    #[serde(default)]
    pub last_event_seq: u64,
    /// Events the runner reported it had to drop.
    #[serde(default)]
    pub dropped_events: u64,
    /// Highest command sequence number enqueued (0: none).
    #[serde(default)]
    pub last_command_seq: u64,
    /// Attempts this run may get (the manager's default when the run named none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Every claim of the run, oldest first.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Runner labels the run needs (see [`CreateRun::require_labels`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub require_labels: BTreeMap<String, String>,
    /// The W3C trace context the run was created under (its `traceparent` header), or else that
    /// of its first command that had one: a claiming runner's spans join that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<crate::trace_context::TraceContext>,
}

/// One runner's hold on a run, from its claim to its release, expiry or the run's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// `att_<run id>_<number>`: unique, and says which run and which attempt it is.
    pub id: String,
    /// 1 for the first claim, then 2, 3…
    pub number: u32,
    pub runner_id: String,
    pub placement: Placement,
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// How it ended; absent while it holds the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<AttemptEnd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptEnd {
    /// The runner reported the run's terminal status.
    Finished,
    /// The runner gave the run back (drain, shutdown, or it stopped before its lease ran out).
    Released,
    /// Its lease ran out; the next claim closed it.
    LeaseExpired,
    /// The run ended while the attempt held it (cancelled, or out of attempts).
    RunEnded,
}

/// Where the runner of an attempt runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// `host-process` or `kubernetes-job`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl Placement {
    pub const HOST_PROCESS: &'static str = "host-process";
    pub const KUBERNETES_JOB: &'static str = "kubernetes-job";

    /// Where this process runs: a Kubernetes Job's pod when the service environment says so
    /// (job name from `AAC_JOB_NAME`, pod from `HOSTNAME`), else a host process.
    pub fn detect() -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        if env("KUBERNETES_SERVICE_HOST").is_some() {
            Self {
                kind: Self::KUBERNETES_JOB.into(),
                host: None,
                job: env("AAC_JOB_NAME"),
                pod: env("HOSTNAME").or(host),
            }
        } else {
            Self {
                kind: Self::HOST_PROCESS.into(),
                host,
                job: None,
                pod: None,
            }
        }
    }
}

/// A command: one agent turn of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub run_id: String,
    /// Per-run sequence number, starting at 1.
    pub seq: u64,
    pub prompt: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    pub status: CommandStatus,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at_ms: Option<u64>,
    /// When the command reached its terminal status (the manager's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TurnOutcome>,
    /// The W3C trace context of the request that enqueued the command (its `traceparent` and
    /// `tracestate` headers): the runner's span of the command joins that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<crate::trace_context::TraceContext>,
}

/// The reply to `DELETE /v1/runs/{run}`: the run, its commands and its events are gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDeleted {
    pub id: String,
    pub deleted: bool,
}

/// The body of every error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, one of [`error_code`].
    pub error: String,
    pub message: String,
}

/// The error codes a manager answers with.
pub mod error_code {
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The token is known but its role may not call the endpoint.
    pub const FORBIDDEN: &str = "forbidden";
    pub const BAD_REQUEST: &str = "bad-request";
    pub const NOT_FOUND: &str = "not-found";
    pub const METHOD_NOT_ALLOWED: &str = "method-not-allowed";
    /// Claim: another runner holds a live lease.
    pub const LEASE_CONFLICT: &str = "lease-conflict";
    /// Runner mutation: the lease token is not the run's current one.
    pub const LEASE_LOST: &str = "lease-lost";
    /// The run already ended.
    pub const RUN_TERMINAL: &str = "run-terminal";
    /// An id was reused with a different body.
    pub const ID_CONFLICT: &str = "id-conflict";
    /// The command's state does not allow the change (e.g. a status for a command never acked).
    pub const COMMAND_STATE: &str = "command-state";
    /// Delete: the run has not ended yet.
    pub const RUN_NOT_FINISHED: &str = "run-not-finished";
    /// The request body is over [`super::MAX_REQUEST_BYTES`].
    pub const PAYLOAD_TOO_LARGE: &str = "payload-too-large";
    /// A request body that is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";
    pub const INTERNAL: &str = "internal";
}

// ---- runner side ----

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRunner {
    /// Client-chosen id, so a retried registration is idempotent. The manager picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    /// `key = value` pairs: placement metadata (host, version) and what the runner offers
    /// (`gpu = a100`, `queue = nightly`); runs that require labels go only to runners with them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub registered_at_ms: u64,
    /// The runner's latest register, claim or heartbeat (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// The runner's latest accepted heartbeat (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms: Option<u64>,
}

/// Whether labels `offered` hold every pair of `required`.
pub fn labels_satisfy(
    offered: &BTreeMap<String, String>,
    required: &BTreeMap<String, String>,
) -> bool {
    required.iter().all(|(k, v)| offered.get(k) == Some(v))
}

/// A runner as `GET /v1/runners` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    #[serde(flatten)]
    pub runner: Runner,
    /// Its `version` label (the aac-host version it registered with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Runs it holds a live lease on now.
    #[serde(default)]
    pub runs_held: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerList {
    pub runners: Vec<RunnerInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub runner_id: String,
    /// Lease length; default [`DEFAULT_LEASE_SECONDS`], at most [`MAX_LEASE_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Where the runner runs, recorded on the attempt (`host-process` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimNextRequest {
    pub runner_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Only runs whose backend profile is one of these (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub run: Run,
    /// Send it as the `X-Lease-Token` header on every runner mutation of this run.
    pub lease_token: String,
    pub lease_expires_at_ms: u64,
    /// The attempt this claim opened; its events carry it.
    #[serde(default)]
    pub attempt_id: String,
    #[serde(default)]
    pub attempt: u32,
    /// The lease length granted, in milliseconds.
    #[serde(default)]
    pub lease_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// New lease length from now; the claim's length when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub lease_expires_at_ms: u64,
    /// The lease length granted from this heartbeat, in milliseconds.
    #[serde(default)]
    pub lease_ms: u64,
    pub run_status: RunStatus,
    /// The run was cancelled: stop the turn, report `cancelled`.
    pub cancel_run: bool,
    /// Commands (acked, not finished) whose cancellation was asked for.
    pub cancel_commands: Vec<String>,
}

/// Cancellation asked for and not yet carried out: what a runner watches (long-poll) during a turn,
/// so a cancel reaches it in milliseconds rather than at its next heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub run_status: RunStatus,
    /// The run was cancelled: stop the turn, report `cancelled`.
    pub cancel_run: bool,
    /// Commands (acked, not finished) whose cancellation was asked for.
    pub cancel_commands: Vec<String>,
}

impl Cancellation {
    /// Whether a runner has something to act on: a cancellation, or a run that ended.
    pub fn is_pending(&self) -> bool {
        self.cancel_run || !self.cancel_commands.is_empty() || self.run_status.is_terminal()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandBatch {
    /// Commands with a sequence number greater than `after`, in order.
    pub commands: Vec<Command>,
    pub run_status: RunStatus,
    pub cancel_requested: bool,
}

/// Largest event batch a runner sends, in JSON bytes: half the request limit, so one batch always
/// fits with room to spare.
pub const MAX_BATCH_BYTES: usize = MAX_REQUEST_BYTES / 2;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppendEvents {
    pub events: Vec<TurnEvent>,
    /// Events the runner had to drop since its previous batch (added to the run's count).
    #[serde(default)]
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendReply {
    /// Highest sequence number stored for the run after this batch.
    pub last_seq: u64,
    /// How many events of this batch were new.
    pub stored: u64,
    /// Run total of dropped events.
    pub dropped_events: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatusUpdate {
    pub status: TerminalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A runner gives its run back: the attempt ends and the run is queued for the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// Why (shown on the attempt), e.g. "the runner drained".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---- client side ----

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateRun {
    /// Client-chosen id (idempotent create); the manager picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    #[serde(default)]
    pub config: serde_json::Value,
    /// Claims the run may get before it ends `failed` (the manager's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Runner labels the run needs: `claim-next` hands it only to a runner registered with every
    /// one of these `key = value` pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub require_labels: BTreeMap<String, String>,
}

impl CreateRun {
    /// A run of `backend` with an empty config and the manager's defaults for everything else.
    pub fn new(backend: impl Into<String>) -> Self {
        Self {
            backend: backend.into(),
            config: serde_json::json!({}),
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnqueueCommand {
    /// Client-chosen id (idempotent enqueue); the manager picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// Checks an id chosen by a client: 1 to 128 characters of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
