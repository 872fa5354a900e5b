//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers and the manager is
//! not shutting down), without a bearer token so load balancers and orchestrators can probe them.

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
