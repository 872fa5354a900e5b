//! A proxy between the host and the real Docker engine (the host reaches it through `DOCKER_HOST`)
//! that can make one container look wedged: every request of one kind for that container is held
//! forever — never forwarded, never answered — as a runc that cannot kill its processes or a daemon
//! stuck on one container's lock does. Everything else passes through byte for byte, upgraded
//! (attached) exec streams included.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// Which requests hang: `method` on `/containers/{id}{suffix}` (any API version prefix), for the
/// first container such a request names; requests for other containers pass.
struct Hang {
    method: String,
    suffix: String,
    container: Option<String>,
}

#[derive(Default)]
struct Shared {
    hang: Mutex<Option<Hang>>,
    /// Every request held, as `METHOD path`.
    held: Mutex<Vec<String>>,
}

pub struct DockerProxy {
    /// The proxy's address, for `DOCKER_HOST`.
    pub docker_host: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl DockerProxy {
    /// A proxy on a loopback port in front of the engine the tests use (`DOCKER_HOST` when it is a
    /// unix socket, else `/var/run/docker.sock`).
    pub async fn start() -> Self {
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let docker_host = format!("tcp://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (shared, upstream) = (shared.clone(), upstream.clone());
                    tokio::spawn(async move {
                        if let Ok(engine) = UnixStream::connect(&upstream).await {
                            serve(client, engine, shared).await;
                        }
                    });
                }
            }
        });
        Self {
            docker_host,
            shared,
            task,
        }
    }

    /// From now on, holds `method` requests on `/containers/{id}{suffix}` for the first container
    /// such a request names (`suffix` "/exec", "/json", "/start"; "" for `DELETE /containers/{id}`).
    pub fn hang_first_container(&self, method: &str, suffix: &str) {
        *self.shared.hang.lock().unwrap() = Some(Hang {
            method: method.into(),
            suffix: suffix.into(),
            container: None,
        });
    }

    /// The container whose requests hang, once one was picked.
    pub fn wedged_container(&self) -> Option<String> {
        self.shared
            .hang
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|hang| hang.container.clone())
    }

    /// Every request held so far, as `METHOD path`.
    pub fn held(&self) -> Vec<String> {
        self.shared.held.lock().unwrap().clone()
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `method path` is to be held; picks the wedged container on the first match.
fn holds(shared: &Shared, method: &str, path: &str) -> bool {
    let mut hang = shared.hang.lock().unwrap();
    let Some(hang) = hang.as_mut() else {
        return false;
    };
    if method != hang.method {
        return false;
    }
    let path = path.split('?').next().unwrap_or(path);
    // Strip an API version prefix (`/v1.41`).
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        _ => path,
    };
    let Some(id) = path
        .strip_prefix("/containers/")
        .and_then(|rest| rest.strip_suffix(hang.suffix.as_str()))
    else {
        return false;
    };
    if id.is_empty() || id.contains('/') || id == "create" || id == "json" {
        return false;
    }
    match &hang.container {
        Some(wedged) => wedged == id,
        None => {
            hang.container = Some(id.to_string());
            true
        }
    }
}

/// Relays one connection: the engine's answers byte for byte; the host's requests one by one, so
/// each can be looked at, until one upgrades the connection (an attached exec) or has a body of
/// unknown length, after which the rest is relayed as is.
async fn serve(client: TcpStream, engine: UnixStream, shared: Arc<Shared>) {
    let (client_read, mut client_write) = client.into_split();
    let (engine_read, mut engine_write) = engine.into_split();
    let answers = tokio::spawn(async move {
        let mut engine_read = engine_read;
        let _ = tokio::io::copy(&mut engine_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut requests = BufReader::new(client_read);
    loop {
        let mut head = Vec::new();
        loop {
            let before = head.len();
            match requests.read_until(b'\n', &mut head).await {
                Ok(0) | Err(_) => {
                    answers.abort();
                    return;
                }
                Ok(_) => {}
            }
            if &head[before..] == b"\r\n" || &head[before..] == b"\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let mut lines = text.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default(),
            first.next().unwrap_or_default(),
        );
        let mut length = 0u64;
        let mut raw_after = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" | "upgrade" => raw_after = true,
                _ => {}
            }
        }
        if holds(&shared, method, path) {
            shared.held.lock().unwrap().push(format!("{method} {path}"));
            // Never answer; read on so the connection ends when the host gives up on it.
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut requests, &mut sink).await;
            answers.abort();
            return;
        }
        if engine_write.write_all(&head).await.is_err() {
            answers.abort();
            return;
        }
        if raw_after {
            let _ = tokio::io::copy(&mut requests, &mut engine_write).await;
            let _ = engine_write.shutdown().await;
            let _ = answers.await;
            return;
        }
        let mut body = (&mut requests).take(length);
        if tokio::io::copy(&mut body, &mut engine_write).await.is_err() {
            answers.abort();
            return;
        }
    }
}
