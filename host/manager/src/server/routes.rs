//! The v1 routes. Bodies are parsed here (not by axum's extractors) so every rejection is a JSON
//! error body like every other error.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, middleware};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Manager;
use super::notify::Subscription;
use crate::error::ManagerError;
use crate::outcome::TurnOutcome;
use crate::protocol::{
    AppendEvents, ClaimNextRequest, ClaimRequest, CreateRun, EnqueueCommand, ErrorBody,
    HeartbeatRequest, LEASE_TOKEN_HEADER, MAX_REQUEST_BYTES, MAX_WAIT_SECONDS, NDJSON,
    RegisterRunner, ReleaseRequest, RunDeleted, RunList, RunStatus, RunStatusUpdate, RunnerList,
    error_code,
};
use crate::trace_context::{TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext};

type Result<T> = std::result::Result<T, ManagerError>;

pub(super) fn router(manager: Manager) -> Router {
    let v1 = Router::new()
        .route("/runners", post(register_runner).get(list_runners))
        .route("/runs", post(create_run).get(list_runs))
        .route("/claim-next", post(claim_next))
        .route("/runs/{run}", get(get_run).delete(delete_run))
        .route("/runs/{run}/claim", post(claim))
        .route("/runs/{run}/heartbeat", post(heartbeat))
        .route("/runs/{run}/cancel", post(cancel_run))
        .route("/runs/{run}/cancellation", get(watch_cancellation))
        .route("/runs/{run}/status", post(run_status))
        .route("/runs/{run}/release", post(release))
        .route("/runs/{run}/commands", get(poll_commands).post(enqueue))
        .route("/runs/{run}/commands/{cmd}", get(get_command))
        .route("/runs/{run}/commands/{cmd}/ack", post(ack))
        .route("/runs/{run}/commands/{cmd}/cancel", post(cancel_command))
        .route("/runs/{run}/commands/{cmd}/status", post(command_status))
        .route("/runs/{run}/events", get(events).post(append_events));
    let v1 = super::results_routes::add(v1);
    // Layers run outermost last-added: JSON errors, then auth, then the content-type check.
    Router::new()
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(middleware::from_fn(super::json_errors::require_json))
        .layer(middleware::from_fn_with_state(
            manager.clone(),
            super::auth::require_bearer,
        ))
        .layer(middleware::from_fn(super::json_errors::as_json))
        .with_state(manager)
}

async fn not_found() -> ManagerError {
    ManagerError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> Response {
    let body = ErrorBody {
        error: error_code::METHOD_NOT_ALLOWED.into(),
        message: "method not allowed on this endpoint".into(),
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// The request's W3C `traceparent`/`tracestate` headers, checked; none without a `traceparent`.
fn trace_context(headers: &HeaderMap) -> Result<Option<TraceContext>> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    ManagerError::BadRequest(format!("the `{name}` header is not ASCII"))
                })
            })
            .transpose()
    };
    let Some(parent) = text(TRACEPARENT_HEADER)? else {
        return Ok(None);
    };
    let state = text(TRACESTATE_HEADER)?;
    TraceContext::parse(parent, state)
        .map(Some)
        .map_err(ManagerError::BadRequest)
}

/// A JSON body; an empty body is `T::default()` when `T` allows it.
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T> {
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    // The error names the field at fault (`invalid body at `events[3].seq`: …`).
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => ManagerError::BadRequest(format!("invalid body: {}", e.into_inner())),
            _ => ManagerError::BadRequest(format!("invalid body at `{path}`: {}", e.into_inner())),
        }
    })?;
    de.end()
        .map_err(|e| ManagerError::BadRequest(format!("invalid body: {e}")))?;
    Ok(value)
}

pub(super) fn query<T>(
    q: std::result::Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T> {
    q.map(|Query(q)| q)
        .map_err(|e| ManagerError::BadRequest(format!("invalid query: {}", e.body_text())))
}

pub(super) fn lease_token(headers: &HeaderMap) -> Result<String> {
    headers
        .get(LEASE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ManagerError::BadRequest("missing X-Lease-Token header".into()))
}

async fn register_runner(State(m): State<Manager>, body: Bytes) -> Result<Response> {
    let req: RegisterRunner = parse(&body)?;
    let runner = m.blocking(move |s| s.register_runner(req)).await?;
    Ok((StatusCode::CREATED, Json(runner)).into_response())
}

async fn list_runners(State(m): State<Manager>) -> Result<Json<RunnerList>> {
    let runners = m.blocking(|s| s.list_runners()).await?;
    Ok(Json(RunnerList { runners }))
}

async fn create_run(State(m): State<Manager>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let req: CreateRun = parse(&body)?;
    let trace = trace_context(&headers)?;
    let run = m.blocking(move |s| s.create_run_traced(req, trace)).await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<RunStatus>,
    limit: Option<usize>,
}

async fn list_runs(
    State(m): State<Manager>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RunList>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(1000);
    let runs = m.blocking(move |s| s.list_runs(q.status, limit)).await?;
    Ok(Json(RunList { runs }))
}

async fn get_run(State(m): State<Manager>, Path(run): Path<String>) -> Result<Response> {
    let run = m.blocking(move |s| s.get_run(&run)).await?;
    Ok(Json(run).into_response())
}

/// Deletes a finished run with its commands and events; `409 run-not-finished` otherwise.
async fn delete_run(State(m): State<Manager>, Path(run): Path<String>) -> Result<Response> {
    let r = run.clone();
    m.blocking(move |s| s.delete_run(&r)).await?;
    m.hub().bump_and_forget(&run);
    Ok(Json(RunDeleted {
        id: run,
        deleted: true,
    })
    .into_response())
}

async fn claim(State(m): State<Manager>, Path(run): Path<String>, body: Bytes) -> Result<Response> {
    let req: ClaimRequest = parse(&body)?;
    let r = run.clone();
    let lease = m.blocking(move |s| s.claim(&r, req)).await?;
    m.hub().bump(&run);
    Ok(Json(lease).into_response())
}

async fn claim_next(State(m): State<Manager>, body: Bytes) -> Result<Response> {
    let req: ClaimNextRequest = parse(&body)?;
    match m.blocking(move |s| s.claim_next(req)).await? {
        Some(lease) => {
            m.hub().bump(&lease.run.id);
            Ok(Json(lease).into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn heartbeat(
    State(m): State<Manager>,
    Path(run): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let req: HeartbeatRequest = parse(&body)?;
    let reply = m.blocking(move |s| s.heartbeat(&run, &token, req)).await?;
    Ok(Json(reply).into_response())
}

async fn cancel_run(State(m): State<Manager>, Path(run): Path<String>) -> Result<Response> {
    let r = run.clone();
    let out = m.blocking(move |s| s.cancel_run(&r)).await?;
    if out.status.is_terminal() {
        m.hub().bump_and_forget(&run);
    } else {
        m.hub().bump(&run);
    }
    Ok(Json(out).into_response())
}

async fn run_status(
    State(m): State<Manager>,
    Path(run): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let req: RunStatusUpdate = parse(&body)?;
    let r = run.clone();
    let out = m
        .blocking(move |s| s.set_run_status(&r, &token, req))
        .await?;
    m.hub().bump_and_forget(&run);
    Ok(Json(out).into_response())
}

/// The lease holder gives the run back for a next attempt.
async fn release(
    State(m): State<Manager>,
    Path(run): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let req: ReleaseRequest = parse(&body)?;
    let r = run.clone();
    let out = m.blocking(move |s| s.release(&r, &token, req)).await?;
    if out.status.is_terminal() {
        m.hub().bump_and_forget(&run);
    } else {
        m.hub().bump(&run);
    }
    Ok(Json(out).into_response())
}

async fn enqueue(
    State(m): State<Manager>,
    Path(run): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let req: EnqueueCommand = parse(&body)?;
    let trace = trace_context(&headers)?;
    let r = run.clone();
    let cmd = m
        .blocking(move |s| s.enqueue_traced(&r, req, trace))
        .await?;
    m.hub().bump(&run);
    Ok((StatusCode::CREATED, Json(cmd)).into_response())
}

#[derive(Deserialize)]
struct PollQuery {
    after: Option<u64>,
    wait: Option<u64>,
    limit: Option<usize>,
}

/// Long-poll: answers as soon as there is a command after `after`, the run ended or was
/// cancelled, or `wait` seconds passed.
async fn poll_commands(
    State(m): State<Manager>,
    Path(run): Path<String>,
    q: std::result::Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).max(1);
    let batch = long_poll(
        &m,
        run,
        q.wait,
        move |s, run| s.commands_after(run, after, limit),
        |batch| {
            !batch.commands.is_empty() || batch.run_status.is_terminal() || batch.cancel_requested
        },
    )
    .await?;
    Ok(Json(batch).into_response())
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

/// Long-poll: answers as soon as a cancellation of the run or of one of its acked commands is
/// pending or the run ended, or after `wait` seconds.
async fn watch_cancellation(
    State(m): State<Manager>,
    Path(run): Path<String>,
    q: std::result::Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let state = long_poll(
        &m,
        run,
        q.wait,
        |s, run| s.cancellation(run),
        |state| state.is_pending(),
    )
    .await?;
    Ok(Json(state).into_response())
}

/// Reads the run's state with `read` until `ready` accepts it, the server closes, or `wait`
/// seconds (at most [`MAX_WAIT_SECONDS`]) passed. Woken by the run's change notifications, never
/// by polling the store.
async fn long_poll<T: Send + 'static>(
    m: &Manager,
    run: String,
    wait: Option<u64>,
    read: impl Fn(&crate::Store, &str) -> Result<T> + Clone + Send + 'static,
    ready: impl Fn(&T) -> bool,
) -> Result<T> {
    let wait = Duration::from_secs(wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    // Dropped when this request ends, however it ends (answer, error, client gone).
    let mut sub = m.hub().subscribe(&run);
    loop {
        sub.rx().borrow_and_update();
        let (r, read) = (run.clone(), read.clone());
        let state = m.blocking(move |s| read(s, &r)).await?;
        if ready(&state) || m.hub().is_closing() || !wait_change(sub.rx(), deadline).await {
            return Ok(state);
        }
    }
}

/// Waits for a change of the run until `deadline`; false when the deadline passed.
async fn wait_change(rx: &mut watch::Receiver<u64>, deadline: tokio::time::Instant) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, rx.changed()).await,
        Ok(Ok(()))
    )
}

async fn get_command(
    State(m): State<Manager>,
    Path((run, cmd)): Path<(String, String)>,
) -> Result<Response> {
    let c = m.blocking(move |s| s.get_command(&run, &cmd)).await?;
    Ok(Json(c).into_response())
}

async fn ack(
    State(m): State<Manager>,
    Path((run, cmd)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let r = run.clone();
    let c = m.blocking(move |s| s.ack(&r, &cmd, &token)).await?;
    m.hub().bump(&run);
    Ok(Json(c).into_response())
}

async fn cancel_command(
    State(m): State<Manager>,
    Path((run, cmd)): Path<(String, String)>,
) -> Result<Response> {
    let r = run.clone();
    let c = m.blocking(move |s| s.cancel_command(&r, &cmd)).await?;
    m.hub().bump(&run);
    Ok(Json(c).into_response())
}

async fn command_status(
    State(m): State<Manager>,
    Path((run, cmd)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let outcome: TurnOutcome = parse(&body)?;
    let r = run.clone();
    let c = m
        .blocking(move |s| s.set_command_status(&r, &cmd, &token, outcome))
        .await?;
    m.hub().bump(&run);
    Ok(Json(c).into_response())
}

async fn append_events(
    State(m): State<Manager>,
    Path(run): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let req: AppendEvents = parse(&body)?;
    let dropped = req.dropped;
    let r = run.clone();
    let reply = m
        .blocking(move |s| s.append_events(&r, &token, req))
        .await?;
    m.metrics().events_appended(reply.stored, dropped);
    if reply.stored > 0 {
        m.hub().bump(&run);
    }
    Ok(Json(reply).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    follow: Option<bool>,
}

/// Events after `after` as NDJSON, one event a line, in sequence order. With `follow=true` the
/// stream stays open, sending events as they are stored, and ends once the run is terminal and all
/// its events were sent.
async fn events(
    State(m): State<Manager>,
    Path(run): Path<String>,
    q: std::result::Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let follow = q.follow.unwrap_or(false);
    let r = run.clone();
    m.blocking(move |s| s.get_run(&r)).await?;
    let sub = m.hub().subscribe(&run);
    let state = Follow {
        m,
        run,
        after: q.after.unwrap_or(0),
        follow,
        sub,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            s.sub.rx().borrow_and_update();
            let (r, after) = (s.run.clone(), s.after);
            match s
                .m
                .blocking(move |st| st.events_after(&r, after, 500))
                .await
            {
                Err(e) => {
                    s.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
                Ok((events, run)) => {
                    if let Some(last) = events.last() {
                        s.after = last.seq;
                        let mut buf = Vec::new();
                        for e in &events {
                            if let Err(e) = serde_json::to_writer(&mut buf, e) {
                                s.done = true;
                                return Some((Err(std::io::Error::other(e)), s));
                            }
                            buf.push(b'\n');
                        }
                        return Some((Ok(Bytes::from(buf)), s));
                    }
                    if !s.follow || run.status.is_terminal() || s.m.hub().is_closing() {
                        return None;
                    }
                    if s.sub.rx().changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response())
}

struct Follow {
    m: Manager,
    run: String,
    after: u64,
    follow: bool,
    /// Dropped with the stream, when it ends or the client goes away.
    sub: Subscription,
    done: bool,
}
