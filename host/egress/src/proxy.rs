//! The proxy: accepts a sandbox's connections, decides each by the allowlist, and streams allowed
//! ones both ways through fixed-size buffers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::credential::Credentials;
use crate::events::{EventSink, NetworkEvent};
use crate::gateway;
use crate::policy::{Allowlist, is_public, normalize};
use crate::request::{self, Head, Target};
use crate::resolve::Resolver;
use crate::sni::{self, Hello};
use crate::splice;

/// Connections one proxy serves at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 256;
/// Buffer of each direction of a connection: what a connection holds in memory at most.
const BUFFER: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a tunnel waits for the client's first bytes (a ClientHello) before it lets the server
/// speak first.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// What a proxy is started with.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Where it listens: the sandbox network's gateway address (port 0 picks one).
    pub listen: SocketAddr,
    pub allow: Arc<Allowlist>,
    pub events: EventSink,
    pub resolver: Resolver,
    /// Secrets bound to destinations, served at `/cred/<NAME>/…` on the proxy's own address.
    pub credentials: Arc<Credentials>,
}

/// A running proxy; dropping it (or [`EgressProxy::stop`]) ends it and every connection it serves.
pub struct EgressProxy {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl EgressProxy {
    pub async fn start(options: ProxyOptions) -> Result<Self> {
        let listener = TcpListener::bind(options.listen).await.with_context(|| {
            format!(
                "could not listen on {} for the egress proxy",
                options.listen
            )
        })?;
        Self::serve(listener, options)
    }

    /// Serves `options`' policy on a listener bound earlier (a ready egress network's, bound
    /// before any run's policy existed); `options.listen` is replaced by the listener's address.
    pub fn serve(listener: TcpListener, mut options: ProxyOptions) -> Result<Self> {
        let address = listener
            .local_addr()
            .context("the egress proxy's listener has no address")?;
        // The gateway recognises requests to itself by this address.
        options.listen = address;
        let state = Arc::new(options);
        let task = tokio::spawn(accept_loop(listener, state));
        Ok(Self { address, task })
    }

    /// The address sandboxes reach it at.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Ends the proxy and its connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ProxyOptions>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Owned here, so aborting this task ends every connection too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let state = state.clone();
                    connections.spawn(async move {
                        serve(client, &state).await;
                        drop(slot);
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One client connection, from its request head to its end; always ends in one event.
async fn serve(mut client: TcpStream, state: &ProxyOptions) {
    let _ = client.set_nodelay(true);
    let head = match request::read_head(&mut client).await {
        Ok(head) => head,
        Err(reason) => {
            deny(&mut client, state, "", 0, "", None, reason).await;
            return;
        }
    };
    if let Some(path) = gateway::route(&head, state.listen) {
        gateway::serve(client, head, path, state).await;
        return;
    }
    let target = match request::target(&head) {
        Ok(target) => target,
        Err(reason) => {
            let method = head.method.clone();
            deny(&mut client, state, &head.target, 0, &method, None, reason).await;
            return;
        }
    };
    let (host, port) = match &target {
        Target::Tunnel { host, port } | Target::Forward { host, port, .. } => (host.clone(), *port),
    };
    let upstream = match open_upstream(state, &host, port).await {
        Ok(upstream) => upstream,
        Err((address, reason)) => {
            deny(
                &mut client,
                state,
                &host,
                port,
                &head.method,
                address,
                reason,
            )
            .await;
            return;
        }
    };
    let address = upstream.peer_addr().ok().map(|a| a.to_string());
    let mut event = NetworkEvent {
        allowed: true,
        host,
        port,
        method: head.method.clone(),
        address,
        bytes_up: 0,
        bytes_down: 0,
        reason: None,
        credential: None,
    };
    let result = match target {
        Target::Tunnel { .. } => tunnel(client, upstream, head, &mut event).await,
        Target::Forward { path, .. } => forward(client, upstream, head, &path, &mut event).await,
    };
    if let Err(reason) = result {
        event.reason = Some(reason);
    }
    state.events.send(event);
}

/// Resolves `host` and connects to an address its allow entry permits; else the address refused
/// (if any) and why.
async fn open_upstream(
    state: &ProxyOptions,
    host: &str,
    port: u16,
) -> Result<TcpStream, (Option<String>, String)> {
    let Some(rule) = state.allow.find(host, port) else {
        let why = if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            "an IP address that is not in the allowlist"
        } else {
            "not in the allowlist"
        };
        return Err((None, format!("{}:{port} is {why}", normalize(host))));
    };
    let addresses = state
        .resolver
        .resolve(host, port)
        .await
        .map_err(|err| (None, format!("could not resolve {host}: {err}")))?;
    connect_any(
        addresses,
        rule.allows_private(),
        &format!("{host} (allow entry `{rule}`)"),
    )
    .await
}

/// Connects to the first of `addresses` that takes it, skipping non-public ones unless `private`;
/// `what` names the destination in the refusal.
pub(crate) async fn connect_any(
    addresses: Vec<SocketAddr>,
    private: bool,
    what: &str,
) -> Result<TcpStream, (Option<String>, String)> {
    let (usable, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .partition(|address| private || is_public(address.ip()));
    if usable.is_empty() {
        let refused = refused.first().map(|a| a.ip().to_string());
        return Err((
            refused.clone(),
            format!(
                "{what} resolves to a non-public address ({}), and private addresses are not permitted for it",
                refused.unwrap_or_else(|| "none".into())
            ),
        ));
    }
    let mut last_error = String::new();
    for address in usable {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(err)) => last_error = format!("could not connect to {address}: {err}"),
            Err(_) => last_error = format!("connecting to {address} took over {CONNECT_TIMEOUT:?}"),
        }
    }
    Err((None, last_error))
}

/// A CONNECT tunnel: confirms it, checks a TLS ClientHello's server name against the host asked
/// for, then copies both ways.
async fn tunnel(
    mut client: TcpStream,
    mut upstream: TcpStream,
    head: Head,
    event: &mut NetworkEvent,
) -> Result<(), String> {
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .map_err(|err| format!("the client went away: {err}"))?;
    let mut first = head.rest;
    loop {
        match sni::parse(&first) {
            Hello::Tls(Some(name)) if normalize(&name) != normalize(&event.host) => {
                event.allowed = false;
                return Err(format!(
                    "the TLS server name `{name}` is not the host the tunnel was opened to"
                ));
            }
            Hello::Incomplete if first.len() < sni::MAX_RECORD => {
                if !read_more(&mut client, &mut first).await {
                    break;
                }
            }
            Hello::Incomplete => {
                event.allowed = false;
                return Err("a TLS ClientHello larger than one record".into());
            }
            Hello::NotTls if first.is_empty() => {
                // Wait briefly for the client's first bytes; a server that speaks first is fine.
                match tokio::time::timeout(FIRST_BYTES_TIMEOUT, client.readable()).await {
                    Ok(Ok(())) => {
                        if !read_more(&mut client, &mut first).await {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            _ => break,
        }
    }
    event.bytes_up += first.len() as u64;
    upstream
        .write_all(&first)
        .await
        .map_err(|err| format!("writing upstream: {err}"))?;
    splice_both_ways(client, upstream, event).await
}

/// Reads more of the client's first bytes into `first`; false when the client sent nothing more.
async fn read_more(client: &mut (impl AsyncRead + Unpin), first: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, client.read(&mut chunk)).await {
        Ok(Ok(read)) if read > 0 => {
            first.extend_from_slice(&chunk[..read]);
            true
        }
        _ => false,
    }
}

/// A plain-HTTP request: sent upstream in origin form, then both directions copied.
async fn forward(
    client: TcpStream,
    mut upstream: TcpStream,
    head: Head,
    path: &str,
    event: &mut NetworkEvent,
) -> Result<(), String> {
    let mut out = request::forwarded_head(&head, path);
    out.extend_from_slice(&head.rest);
    event.bytes_up += out.len() as u64;
    upstream
        .write_all(&out)
        .await
        .map_err(|err| format!("writing upstream: {err}"))?;
    splice_both_ways(client, upstream, event).await
}

/// Streams a tunnel between two sockets, the kernel moving the bytes (see [`crate::splice`]).
async fn splice_both_ways(
    client: TcpStream,
    upstream: TcpStream,
    event: &mut NetworkEvent,
) -> Result<(), String> {
    count(splice::both_ways(client, upstream).await, event)
}

/// Streams a connection whose upstream is not a plain socket (the gateway's TLS) through buffers.
pub(crate) async fn copy_both_ways(
    mut client: TcpStream,
    mut upstream: impl AsyncRead + AsyncWrite + Unpin,
    event: &mut NetworkEvent,
) -> Result<(), String> {
    let copied =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER).await;
    count(copied, event)
}

fn count(copied: std::io::Result<(u64, u64)>, event: &mut NetworkEvent) -> Result<(), String> {
    match copied {
        Ok((up, down)) => {
            event.bytes_up += up;
            event.bytes_down += down;
            Ok(())
        }
        Err(err) => Err(format!("the connection ended with an error: {err}")),
    }
}

/// Answers 403 with the reason and reports the denial.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deny(
    client: &mut TcpStream,
    state: &ProxyOptions,
    host: &str,
    port: u16,
    method: &str,
    address: Option<String>,
    reason: String,
) {
    let body = format!("aac-egress: denied: {reason}\n");
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
    state.events.send(NetworkEvent {
        allowed: false,
        host: host.to_string(),
        port,
        method: method.to_string(),
        address,
        bytes_up: 0,
        bytes_down: 0,
        reason: Some(reason),
        credential: None,
    });
}
