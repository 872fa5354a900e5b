//! The access log: one line per request on target `access` (`info`, or the level the manager's
//! config names: `debug` for the manager embedded in `aac-host run`), with the method, the matched
//! route (a template such as `/v1/runs/{run}`, never a query string), the status, the latency in
//! ms, and the run and runner ids where the request names them. Headers are never logged (they
//! carry the bearer and lease tokens).

use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::Manager;
use crate::protocol::valid_id;

/// Bodies of at most this size are read for a runner id (register and claim bodies are tiny).
const PEEK_LIMIT: usize = 16 * 1024;

pub(super) async fn log_request(
    State(manager): State<Manager>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let run = route
        .as_deref()
        .filter(|r| r.starts_with("/v1/runs/{run}"))
        .and_then(|_| request.uri().path().split('/').nth(3))
        .filter(|id| valid_id(id))
        .map(str::to_owned);
    let (request, runner) = match route.as_deref() {
        Some("/v1/runners" | "/v1/claim-next" | "/v1/runs/{run}/claim")
            if method == Method::POST =>
        {
            peek_runner(request).await
        }
        _ => (request, None),
    };
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("(no route)");
    let seconds = started.elapsed().as_secs_f64();
    manager
        .metrics()
        .observe_request(method.as_str(), route, response.status().as_u16(), seconds);
    macro_rules! access_line {
        ($level:expr) => {
            tracing::event!(
                target: "access",
                $level,
                method = %method,
                route,
                status = response.status().as_u16(),
                latency_ms = seconds * 1000.0,
                run = run.as_deref(),
                runner = runner.as_deref(),
                "request"
            )
        };
    }
    // `event!` needs its level as a constant.
    if manager.access_log_level() == tracing::Level::INFO {
        access_line!(tracing::Level::INFO);
    } else {
        access_line!(tracing::Level::DEBUG);
    }
    response
}

/// The runner id a register or claim body names, and the request with its body intact.
async fn peek_runner(request: Request) -> (Request, Option<String>) {
    let small = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= PEEK_LIMIT);
    if !small {
        return (request, None);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, PEEK_LIMIT).await else {
        return (Request::from_parts(parts, Body::empty()), None);
    };
    let runner = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("runner_id")
                .or_else(|| v.get("id"))
                .and_then(|id| id.as_str().map(str::to_owned))
        })
        .filter(|id| valid_id(id));
    (Request::from_parts(parts, Body::from(bytes)), runner)
}
