//! A scripted model server for end-to-end tests: each model request takes the next reply from a
//! queue the test filled, and every request is recorded (path, headers, JSON body) so a test can
//! assert what the agent CLI sent, e.g. the history on resume.
//!
//! It binds on the address of Docker's bridge interface, which a container on the `bridge` network
//! reaches (also as `host.docker.internal`) and nothing outside this machine does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One scripted answer to a model request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Server-sent events (`event: <name>` + `data: <json>`), then a clean end of the stream.
    Sse(Vec<(String, Value)>),
    /// These events, then the connection is cut mid-stream.
    Broken(Vec<(String, Value)>),
    /// These events, then silence: the response stays open until the server is dropped.
    Stall(Vec<(String, Value)>),
    /// An HTTP error status with a JSON body.
    Status(u16, Value),
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    /// Whether a scripted reply answered it (`false`: the queue was empty or the path unknown).
    pub scripted: bool,
}

struct Shared {
    /// Paths that take a scripted reply, e.g. `/v1/responses`.
    model_paths: Vec<String>,
    replies: Mutex<VecDeque<Reply>>,
    /// Answers model requests once the queue is empty (benchmarks repeat one turn).
    fallback: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    /// Ends stalled responses when the server is dropped.
    closing: CancellationToken,
}

/// A running mock server; dropping it stops it and ends stalled responses.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Starts a server on `ip` (port chosen by the OS) answering POSTs to `model_paths`.
    pub async fn start(ip: IpAddr, model_paths: &[&str]) -> Self {
        let shared = Arc::new(Shared {
            model_paths: model_paths.iter().map(|p| p.to_string()).collect(),
            replies: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            closing: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|err| panic!("binding the mock model server on {ip}: {err}"));
        let addr = listener.local_addr().expect("mock server address");
        let app = Router::new().fallback({
            let shared = shared.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(&shared, method, uri, headers, body) }
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<ip>:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues the reply for the next model request.
    pub fn push(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// Answers every model request with `reply` once the queue is empty.
    pub fn set_fallback(&self, reply: Reply) {
        *self.shared.fallback.lock().unwrap() = Some(reply);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests that went to a model path.
    pub fn model_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| self.shared.model_paths.contains(&r.path))
            .collect()
    }

    /// Replies still queued.
    pub fn pending(&self) -> usize {
        self.shared.replies.lock().unwrap().len()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shared.closing.cancel();
        self.task.abort();
    }
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let reply = if method == Method::POST && shared.model_paths.contains(&path) {
        let queued = shared.replies.lock().unwrap().pop_front();
        queued.or_else(|| shared.fallback.lock().unwrap().clone())
    } else {
        None
    };
    shared.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        scripted: reply.is_some(),
    });
    let Some(reply) = reply else {
        let status = if shared.model_paths.contains(&path) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NOT_FOUND
        };
        return json_response(
            status,
            serde_json::json!({ "error": { "message": format!("mock: no scripted reply for {method} {path}") } }),
        );
    };
    match reply {
        Reply::Status(status, body) => json_response(
            StatusCode::from_u16(status).expect("a valid HTTP status"),
            body,
        ),
        Reply::Sse(events) => sse_response(Body::from_stream(frames(events))),
        Reply::Broken(events) => {
            let cut = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("mock: stream cut"))
            });
            sse_response(Body::from_stream(
                frames(events)
                    .map(|f| f.map_err(|never| match never {}))
                    .chain(cut),
            ))
        }
        Reply::Stall(events) => {
            let closing = shared.closing.clone();
            let silence = futures::stream::once(async move {
                closing.cancelled().await;
                Err::<Bytes, std::io::Error>(std::io::Error::other("mock: server closed"))
            });
            sse_response(Body::from_stream(
                frames(events)
                    .map(|f| f.map_err(|never| match never {}))
                    .chain(silence),
            ))
        }
    }
}

fn frames(
    events: Vec<(String, Value)>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::iter(
        events
            .into_iter()
            .map(|(name, data)| Ok(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))),
    )
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("a valid response")
}

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// Where a container on Docker's default bridge reaches this machine: the IPv4 address of the
/// bridge's own interface (`docker0`, or the interface named by the network's
/// `com.docker.network.bridge.name` option), which is also what `host.docker.internal` (Docker's
/// `host-gateway`) resolves to in a sandbox. A freshly started dockerd lists no `Gateway` in the
/// network's IPAM config, so that field is not used.
pub async fn sandbox_host_address() -> IpAddr {
    let driver = crate::docker().await;
    let network = driver
        .client()
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("inspecting Docker's bridge network");
    let interface = network
        .options
        .and_then(|options| options.get("com.docker.network.bridge.name").cloned())
        .unwrap_or_else(|| "docker0".into());
    crate::interfaces::ipv4_address(&interface).unwrap_or_else(|| {
        panic!("Docker's bridge interface `{interface}` has no IPv4 address on this machine")
    })
}
