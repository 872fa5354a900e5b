//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers and the manager is
//! not shutting down), and `GET /metrics` (Prometheus text), without a bearer token so load
//! balancers, orchestrators and scrapers can reach them.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use super::Manager;

/// A store that takes longer than this to answer a read counts as not ready.
const PROBE_BOUND: Duration = Duration::from_secs(2);

pub(super) fn router(manager: Manager) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(manager)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(m): State<Manager>) -> Response {
    if m.hub().is_closing() {
        return not_ready("the manager is shutting down".into());
    }
    match tokio::time::timeout(PROBE_BOUND, m.blocking(|s| s.probe())).await {
        Ok(Ok(runs)) => {
            Json(json!({ "status": "ready", "store": "ok", "runs": runs })).into_response()
        }
        Ok(Err(err)) => not_ready(format!("the store did not answer: {err}")),
        Err(_) => not_ready(format!(
            "the store did not answer within {} s",
            PROBE_BOUND.as_secs()
        )),
    }
}

fn not_ready(reason: String) -> Response {
    tracing::warn!(%reason, "readiness check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
        .into_response()
}

/// Prometheus text exposition; the store's counts are read at each scrape.
async fn metrics(State(m): State<Manager>) -> Response {
    match m.blocking(|s| Ok((s.run_stats()?, s.now_ms()))).await {
        Ok((stats, now)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            m.metrics().render(&stats, now),
        )
            .into_response(),
        Err(err) => not_ready(format!("the store did not answer: {err}")),
    }
}
