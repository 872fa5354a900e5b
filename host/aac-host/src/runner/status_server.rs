//! A runner's status listener (`--status-listen ADDR`): `GET /healthz` answers while the process
//! runs; `GET /readyz` is 200 when the runner registered, its last claim poll or heartbeat reached
//! the manager and it is not draining (503 otherwise), with its runs and warm-pool fill as JSON.
//! No token: it shows no secret, and orchestrators probe it unauthenticated.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Runner;

/// The status listener serving in the background; stops when [`StatusServer::stop`] is called
/// or it is dropped.
pub struct StatusServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// Binds `addr` and serves `runner`'s status until stopped.
    pub async fn start(addr: SocketAddr, runner: Arc<Runner>) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen on {addr} (--status-listen)"))?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = router(runner);
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "the status listener stopped");
            }
        });
        tracing::info!(%addr, "status listener up (/healthz, /readyz)");
        Ok(Self {
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn router(runner: Arc<Runner>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(runner)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus text exposition of the runner's metrics.
async fn metrics(State(runner): State<Arc<Runner>>) -> Response {
    let report = runner.status_report().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        runner.metrics().render(&report),
    )
        .into_response()
}

async fn readyz(State(runner): State<Arc<Runner>>) -> Response {
    let report = runner.status_report().await;
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}
