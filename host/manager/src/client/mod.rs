//! `ManagerClient`: typed protocol v1 calls over HTTP, for runners and for clients.
//!
//! Every call carries the bearer token and a per-request timeout. 429, 5xx, connection errors and
//! timeouts are retried with jittered exponential backoff (a `Retry-After` in seconds is honoured)
//! until the policy's total deadline; other 4xx are returned at once. A reply that is not the
//! expected JSON is [`ClientError::SchemaInvalid`], naming the endpoint and serde's complaint.
//!
//! Retried creations are safe: the client picks the ids of runners, runs and commands it creates,
//! and the manager treats a repeated id with the same body as the same object.

mod blobs;
mod error;
mod events;
mod retry;
mod runners;
mod tls;

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::ClientError;
pub use retry::RetryPolicy;

use super::protocol::{
    AppendReply, Cancellation, ClaimNextRequest, ClaimRequest, Command, CommandBatch, CreateRun,
    EnqueueCommand, ErrorBody, HeartbeatReply, HeartbeatRequest, LEASE_TOKEN_HEADER, Lease,
    Placement, RegisterRunner, ReleaseRequest, Run, RunDeleted, RunList, RunStatus,
    RunStatusUpdate, Runner, error_code, valid_id,
};
use crate::outcome::{TurnEvent, TurnOutcome};
use crate::trace_context::{TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext};

type Result<T> = std::result::Result<T, ClientError>;

/// How long connecting to the manager may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from a file per chunk of an upload.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A stream of events as the manager stores them.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<TurnEvent>> + Send>>;

/// A 2xx reply: read whole (JSON calls) or left open (event streams).
enum Reply {
    Buffered(StatusCode, Bytes),
    Streaming(reqwest::Response),
}

impl Reply {
    fn bytes(&self) -> &[u8] {
        match self {
            Reply::Buffered(_, b) => b,
            Reply::Streaming(_) => &[],
        }
    }
}

/// A request body.
enum Payload {
    Json(Bytes),
    /// Raw bytes (a blob).
    Bytes(Bytes),
    /// A file's content, streamed (a blob).
    File(std::path::PathBuf),
}

/// A typed client of one manager.
#[derive(Clone)]
pub struct ManagerClient {
    http: reqwest::Client,
    base: String,
    token: String,
    request_timeout: Duration,
    retry: RetryPolicy,
    /// Sent as the W3C `traceparent`/`tracestate` headers of every request.
    trace_context: Option<TraceContext>,
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient")
            .field("base", &self.base)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn seg(endpoint: &str, id: &str) -> Result<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ClientError::Request {
            endpoint: endpoint.to_owned(),
            message: format!("{id:?} is not a valid id"),
        })
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ClientError::SchemaInvalid {
        endpoint: endpoint.to_owned(),
        message: format!(
            "reply is not a valid {}: {e}; reply was: {:?}",
            short_type_name::<T>(),
            excerpt(body)
        ),
    })
}

fn lease_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl ManagerClient {
    /// A client of the manager at `base_url` (e.g. `http://127.0.0.1:8080`), 30 s per request,
    /// default retry policy.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Result<Self> {
        let base = base_url.into().trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Request {
                endpoint: base.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            base,
            token: token.into(),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            trace_context: None,
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sends `trace_context` as the W3C `traceparent`/`tracestate` headers: runs and commands
    /// this client creates join that trace.
    pub fn with_trace_context(mut self, trace_context: Option<TraceContext>) -> Self {
        self.trace_context = trace_context;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends one request with a JSON body, retrying as the policy says; returns a 2xx response.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        lease: Option<&str>,
        timeout: Option<Duration>,
        buffer: bool,
    ) -> Result<(String, Reply)> {
        let body = body.map(Payload::Json);
        self.send_payload(method, path, body.as_ref(), lease, timeout, buffer)
            .await
    }

    /// Sends one request, retrying as the policy says; returns a 2xx response.
    async fn send_payload(
        &self,
        method: Method,
        path: &str,
        body: Option<&Payload>,
        lease: Option<&str>,
        timeout: Option<Duration>,
        buffer: bool,
    ) -> Result<(String, Reply)> {
        let endpoint = format!("{method} /v1{path}");
        let url = format!("{}/v1{path}", self.base);
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            match body {
                Some(Payload::Json(b)) => {
                    req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
                }
                // Each attempt reads the file again from its start.
                Some(Payload::File(file)) => {
                    let opened =
                        tokio::fs::File::open(file)
                            .await
                            .map_err(|e| ClientError::Request {
                                endpoint: endpoint.clone(),
                                message: format!("cannot read {}: {e}", file.display()),
                            })?;
                    let len = opened.metadata().await.map(|m| m.len()).unwrap_or(0);
                    req = req
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_LENGTH, len)
                        // Read in large chunks: each read of a tokio file is a trip to the
                        // blocking pool, and `Body::from(File)` reads 4 KiB at a time.
                        .body(reqwest::Body::wrap_stream(
                            tokio_util::io::ReaderStream::with_capacity(opened, UPLOAD_CHUNK),
                        ));
                }
                Some(Payload::Bytes(b)) => {
                    req = req
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(b.clone());
                }
                None => {}
            }
            if let Some(l) = lease {
                req = req.header(LEASE_TOKEN_HEADER, l);
            }
            if let Some(trace) = &self.trace_context {
                req = req.header(TRACEPARENT_HEADER, &trace.traceparent);
                if let Some(state) = &trace.tracestate {
                    req = req.header(TRACESTATE_HEADER, state);
                }
            }
            let (status, retry_after, last) = match req.send().await {
                Ok(resp) if resp.status().is_success() && !buffer => {
                    return Ok((endpoint, Reply::Streaming(resp)));
                }
                Ok(resp) if resp.status().is_success() => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(b) => return Ok((endpoint, Reply::Buffered(status, b))),
                        // The manager went away mid-reply: like a connection error, retried.
                        Err(e) => (None, None, format!("reading the reply: {e}")),
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.bytes().await.unwrap_or_default();
                    let (code, message) = match serde_json::from_slice::<ErrorBody>(&text) {
                        Ok(b) => (b.error, b.message),
                        Err(_) => (
                            status.canonical_reason().unwrap_or("").to_lowercase(),
                            excerpt(&text),
                        ),
                    };
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        return Err(match status {
                            StatusCode::UNAUTHORIZED => {
                                ClientError::Unauthorized { endpoint, message }
                            }
                            StatusCode::CONFLICT
                                if code == error_code::LEASE_LOST
                                    || code == error_code::LEASE_CONFLICT =>
                            {
                                ClientError::Lease {
                                    endpoint,
                                    code,
                                    message,
                                }
                            }
                            _ => ClientError::Status {
                                endpoint,
                                status: status.as_u16(),
                                code,
                                message,
                            },
                        });
                    }
                    let last = format!("HTTP {} {code}: {message}", status.as_u16());
                    (Some(status.as_u16()), retry_after, last)
                }
                Err(e) if e.is_builder() => {
                    return Err(ClientError::Request {
                        endpoint,
                        message: e.to_string(),
                    });
                }
                Err(e) => {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg.push_str(": ");
                        msg.push_str(&s.to_string());
                        src = s.source();
                    }
                    // A certificate that is not trusted does not become trusted by retrying.
                    if let Some(hint) = tls::hint(&msg) {
                        return Err(ClientError::Request {
                            endpoint,
                            message: format!("{msg} ({hint})"),
                        });
                    }
                    (None, None, msg)
                }
            };
            let delay = match retry_after {
                Some(d) => d.min(self.retry.max_retry_after),
                None => self.retry.backoff(attempts),
            };
            if start.elapsed() + delay > self.retry.deadline {
                tracing::warn!(%endpoint, attempts, error = %last, "manager call failed, giving up");
                return Err(ClientError::Unavailable {
                    endpoint,
                    attempts,
                    status,
                    last,
                });
            }
            tracing::debug!(%endpoint, attempts, error = %last, ?delay, "manager call failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One call whose reply is JSON `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        lease: Option<&str>,
    ) -> Result<T> {
        self.call_with_timeout(method, path, body, lease, self.request_timeout)
            .await
    }

    async fn call_with_timeout<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        lease: Option<&str>,
        timeout: Duration,
    ) -> Result<T> {
        let body = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| {
                ClientError::Request {
                    endpoint: format!("{method} /v1{path}"),
                    message: format!("cannot encode the request: {e}"),
                }
            })?)),
            None => None,
        };
        let (endpoint, reply) = self
            .send(method, path, body, lease, Some(timeout), true)
            .await?;
        decode(&endpoint, reply.bytes())
    }

    const NO_BODY: Option<&'static ()> = None;

    // ---- runner side ----

    /// Registers a runner; the client picks its id when `req.id` is absent.
    pub async fn register_runner(&self, mut req: RegisterRunner) -> Result<Runner> {
        req.id
            .get_or_insert_with(|| format!("rnr_{}", uuid::Uuid::new_v4().simple()));
        self.call(Method::POST, "/runners", Some(&req), None).await
    }

    /// Claims `run` for `runner_id`: a lease token and its expiry. A live lease of another runner is
    /// [`ClientError::Lease`] with code `lease-conflict`.
    pub async fn claim(&self, run: &str, runner_id: &str, lease: Duration) -> Result<Lease> {
        seg("claim", run)?;
        let req = ClaimRequest {
            runner_id: runner_id.to_owned(),
            lease_seconds: Some(lease_secs(lease)),
            placement: Some(Placement::detect()),
        };
        self.call(
            Method::POST,
            &format!("/runs/{run}/claim"),
            Some(&req),
            None,
        )
        .await
    }

    /// Claims the oldest queued run (optionally of these backends); `None` when there is none.
    pub async fn claim_next(
        &self,
        runner_id: &str,
        lease: Duration,
        backends: Option<Vec<String>>,
    ) -> Result<Option<Lease>> {
        let req = ClaimNextRequest {
            runner_id: runner_id.to_owned(),
            lease_seconds: Some(lease_secs(lease)),
            backends,
            placement: Some(Placement::detect()),
        };
        let body = Bytes::from(serde_json::to_vec(&req).expect("plain struct"));
        let (endpoint, reply) = self
            .send(
                Method::POST,
                "/claim-next",
                Some(body),
                None,
                Some(self.request_timeout),
                true,
            )
            .await?;
        if let Reply::Buffered(StatusCode::NO_CONTENT, _) = reply {
            return Ok(None);
        }
        decode(&endpoint, reply.bytes()).map(Some)
    }

    /// Extends the lease (by `lease`, or the claim's length); the reply carries cancellation.
    pub async fn heartbeat(
        &self,
        run: &str,
        lease_token: &str,
        lease: Option<Duration>,
    ) -> Result<HeartbeatReply> {
        seg("heartbeat", run)?;
        let req = HeartbeatRequest {
            lease_seconds: lease.map(lease_secs),
        };
        self.call(
            Method::POST,
            &format!("/runs/{run}/heartbeat"),
            Some(&req),
            Some(lease_token),
        )
        .await
    }

    /// Commands after sequence `after`; waits up to `wait` for one to arrive (long-poll).
    pub async fn poll_commands(
        &self,
        run: &str,
        after: u64,
        wait: Duration,
    ) -> Result<CommandBatch> {
        seg("poll commands", run)?;
        let path = format!("/runs/{run}/commands?after={after}&wait={}", wait.as_secs());
        self.call_with_timeout(
            Method::GET,
            &path,
            Self::NO_BODY,
            None,
            self.request_timeout + wait,
        )
        .await
    }

    /// The run's pending cancellation; waits up to `wait` for one (long-poll). A runner keeps one
    /// open while a turn runs.
    pub async fn watch_cancellation(&self, run: &str, wait: Duration) -> Result<Cancellation> {
        seg("watch cancellation", run)?;
        let path = format!("/runs/{run}/cancellation?wait={}", wait.as_secs());
        self.call_with_timeout(
            Method::GET,
            &path,
            Self::NO_BODY,
            None,
            self.request_timeout + wait,
        )
        .await
    }

    pub async fn ack(&self, run: &str, cmd: &str, lease_token: &str) -> Result<Command> {
        seg("ack", run)?;
        seg("ack", cmd)?;
        let path = format!("/runs/{run}/commands/{cmd}/ack");
        self.call(Method::POST, &path, Self::NO_BODY, Some(lease_token))
            .await
    }

    pub async fn get_command(&self, run: &str, cmd: &str) -> Result<Command> {
        seg("get command", run)?;
        seg("get command", cmd)?;
        let path = format!("/runs/{run}/commands/{cmd}");
        self.call(Method::GET, &path, Self::NO_BODY, None).await
    }

    /// Appends a batch of events; safe to retry (events already stored are ignored). `batch` is
    /// an [`AppendEvents`](super::protocol::AppendEvents), or anything that serializes as one (a runner keeps its buffered events
    /// as encoded JSON, see `EncodedBatch` in aac-host).
    pub async fn append_events(
        &self,
        run: &str,
        lease_token: &str,
        batch: &(impl Serialize + ?Sized),
    ) -> Result<AppendReply> {
        seg("append events", run)?;
        let path = format!("/runs/{run}/events");
        self.call(Method::POST, &path, Some(batch), Some(lease_token))
            .await
    }

    pub async fn command_status(
        &self,
        run: &str,
        cmd: &str,
        lease_token: &str,
        outcome: &TurnOutcome,
    ) -> Result<Command> {
        seg("command status", run)?;
        seg("command status", cmd)?;
        let path = format!("/runs/{run}/commands/{cmd}/status");
        self.call(Method::POST, &path, Some(outcome), Some(lease_token))
            .await
    }

    pub async fn run_status(
        &self,
        run: &str,
        lease_token: &str,
        update: &RunStatusUpdate,
    ) -> Result<Run> {
        seg("run status", run)?;
        let path = format!("/runs/{run}/status");
        self.call(Method::POST, &path, Some(update), Some(lease_token))
            .await
    }

    /// Gives the run back: this attempt ends and the run is queued for the next one.
    pub async fn release(
        &self,
        run: &str,
        lease_token: &str,
        message: impl Into<String>,
    ) -> Result<Run> {
        seg("release", run)?;
        let req = ReleaseRequest {
            message: Some(message.into()),
        };
        let path = format!("/runs/{run}/release");
        self.call(Method::POST, &path, Some(&req), Some(lease_token))
            .await
    }

    // ---- client side ----

    /// Creates a queued run; the client picks its id when `req.id` is absent.
    pub async fn create_run(&self, mut req: CreateRun) -> Result<Run> {
        req.id
            .get_or_insert_with(|| format!("run_{}", uuid::Uuid::new_v4().simple()));
        self.call(Method::POST, "/runs", Some(&req), None).await
    }

    pub async fn get_run(&self, run: &str) -> Result<Run> {
        seg("get run", run)?;
        self.call(Method::GET, &format!("/runs/{run}"), Self::NO_BODY, None)
            .await
    }

    /// Runs oldest first; only those with `status` when given (`queued` is what a pool runner wants).
    pub async fn list_runs(&self, status: Option<RunStatus>) -> Result<Vec<Run>> {
        let path = match status {
            Some(s) => format!("/runs?status={s}"),
            None => "/runs".to_owned(),
        };
        let list: RunList = self.call(Method::GET, &path, Self::NO_BODY, None).await?;
        Ok(list.runs)
    }

    /// Enqueues a command; the client picks its id when `req.id` is absent.
    pub async fn enqueue(&self, run: &str, mut req: EnqueueCommand) -> Result<Command> {
        seg("enqueue", run)?;
        req.id
            .get_or_insert_with(|| format!("cmd_{}", uuid::Uuid::new_v4().simple()));
        self.call(
            Method::POST,
            &format!("/runs/{run}/commands"),
            Some(&req),
            None,
        )
        .await
    }

    pub async fn cancel_run(&self, run: &str) -> Result<Run> {
        seg("cancel run", run)?;
        self.call(
            Method::POST,
            &format!("/runs/{run}/cancel"),
            Self::NO_BODY,
            None,
        )
        .await
    }

    /// Deletes a finished run with its commands and events; a run that has not ended is
    /// refused (`409 run-not-finished`).
    pub async fn delete_run(&self, run: &str) -> Result<RunDeleted> {
        seg("delete run", run)?;
        self.call(Method::DELETE, &format!("/runs/{run}"), Self::NO_BODY, None)
            .await
    }

    pub async fn cancel_command(&self, run: &str, cmd: &str) -> Result<Command> {
        seg("cancel command", run)?;
        seg("cancel command", cmd)?;
        let path = format!("/runs/{run}/commands/{cmd}/cancel");
        self.call(Method::POST, &path, Self::NO_BODY, None).await
    }
}
