//! A fault-injecting HTTP proxy in front of a real manager: requests pass through unchanged unless
//! a fault matches them, in which case the proxy answers an error status or a malformed body
//! itself, forwards late, never answers, or cuts the connection. Tests use it to make heartbeats
//! fail, slow or vanish, and replies garbage, mid-run.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// What the proxy does with a matching request.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer this status with an empty body, without forwarding.
    Status(u16),
    /// Answer 200 with this body (not what the protocol says), without forwarding.
    Garbage(&'static str),
    /// Forward, but only after this long (the manager answers; the network is slow).
    Delay(std::time::Duration),
    /// Never answer and never forward: the request hangs until the client gives up.
    BlackHole,
    /// Start a reply and cut the connection before it is complete.
    Reset,
    /// Answer this status to a request whose body is over this many bytes; forward smaller ones
    /// (a manager that takes small requests but not big ones).
    StatusOver(u16, usize),
}

#[derive(Clone, Debug)]
struct Fault {
    /// `None`: every method.
    method: Option<Method>,
    /// Matches when the request path ends with this.
    path_suffix: String,
    action: FaultAction,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Mutex<Vec<Fault>>>,
    /// Every request seen, as `METHOD path?query`, with when it arrived.
    seen: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
}

pub struct FaultProxy {
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a loopback port of its own, forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            faults: Arc::default(),
            seen: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Answers `method` requests whose path ends with `path_suffix` with `action` from now on.
    pub fn inject(&self, method: Method, path_suffix: &str, action: FaultAction) {
        self.shared.faults.lock().unwrap().push(Fault {
            method: Some(method),
            path_suffix: path_suffix.into(),
            action,
        });
    }

    /// Answers every request with `action` from now on (the manager as the runner sees it is
    /// slow, gone or broken).
    pub fn inject_all(&self, action: FaultAction) {
        self.shared.faults.lock().unwrap().push(Fault {
            method: None,
            path_suffix: String::new(),
            action,
        });
    }

    pub fn clear(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// How many requests had a path ending with `path_suffix`.
    pub fn count(&self, path_suffix: &str) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.split('?').next().unwrap_or("").ends_with(path_suffix))
            .count()
    }

    /// Requests seen so far, as `METHOD path?query`, with when each arrived.
    pub fn requests(&self) -> Vec<(String, std::time::Instant)> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    shared.seen.lock().unwrap().push((
        format!("{method} {path_and_query}"),
        std::time::Instant::now(),
    ));
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .iter()
        .find(|f| f.method.as_ref().is_none_or(|m| *m == method) && path.ends_with(&f.path_suffix))
        .cloned();
    let mut refuse_over = None;
    match fault.map(|f| f.action) {
        Some(FaultAction::Status(code)) => {
            return StatusCode::from_u16(code).unwrap().into_response();
        }
        Some(FaultAction::Garbage(body)) => {
            return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
        }
        Some(FaultAction::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(FaultAction::BlackHole) => std::future::pending::<()>().await,
        Some(FaultAction::Reset) => {
            let cut = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("connection reset by the fault proxy"))
            });
            return (StatusCode::OK, Body::from_stream(cut)).into_response();
        }
        Some(FaultAction::StatusOver(code, bytes)) => refuse_over = Some((code, bytes)),
        None => {}
    }
    let headers = request.headers().clone();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), 16 << 20).await {
        Ok(body) => body,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    if let Some((code, bytes)) = refuse_over
        && body.len() > bytes
    {
        return StatusCode::from_u16(code).unwrap().into_response();
    }
    let mut upstream = shared
        .http
        .request(method, format!("{}{path_and_query}", shared.upstream))
        .body(body);
    for (name, value) in headers.iter() {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    match upstream.send().await {
        Ok(reply) => {
            let status = StatusCode::from_u16(reply.status().as_u16()).unwrap();
            let mut out_headers = HeaderMap::new();
            for (name, value) in reply.headers() {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
                    axum::http::HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    out_headers.insert(name, value);
                }
            }
            out_headers.remove("content-length");
            out_headers.remove("transfer-encoding");
            let body = Body::from_stream(reply.bytes_stream());
            (status, out_headers, body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
