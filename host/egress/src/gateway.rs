//! The credential gateway: a request to `/cred/<NAME>/<rest>` on the proxy's address goes to the
//! credential's upstream as `<base-path>/<rest>`, with the placeholder header the client sent
//! replaced by the real one. Bodies are not parsed: after the rewritten head, bytes stream both
//! ways through the proxy's fixed buffers (an SSE response arrives as the upstream sends it).
//! One request per connection (`Connection: close` upstream).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

use crate::credential::{Credential, ROUTE_PREFIX};
use crate::events::NetworkEvent;
use crate::proxy::{ProxyOptions, connect_any, copy_both_ways, deny};
use crate::request::Head;

/// Headers never forwarded: hop-by-hop ones, the proxy's, and `Host` (the upstream's is sent).
const DROPPED: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "upgrade",
    "trailer",
];

/// The path of a request meant for the gateway rather than a destination: origin form
/// (`GET /cred/…`), or absolute form naming the proxy's own address (a client that sends
/// everything through its proxy).
pub fn route(head: &Head, own: SocketAddr) -> Option<String> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        return None;
    }
    if head.target.starts_with('/') {
        return Some(head.target.clone());
    }
    let rest = head.target.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    (authority.parse::<SocketAddr>().ok() == Some(own)).then(|| path.to_string())
}

/// Serves one gateway request; always ends in one event.
pub async fn serve(mut client: TcpStream, head: Head, path: String, state: &ProxyOptions) {
    let own = state.listen;
    let (credential, rest) = match resolve_route(&path, state) {
        Ok(found) => found,
        Err(reason) => {
            let host = own.ip().to_string();
            deny(
                &mut client,
                state,
                &host,
                own.port(),
                &head.method,
                None,
                reason,
            )
            .await;
            return;
        }
    };
    let upstream = &credential.upstream;
    let mut event = NetworkEvent {
        allowed: true,
        host: upstream.host.clone(),
        port: upstream.port,
        method: head.method.clone(),
        address: None,
        bytes_up: 0,
        bytes_down: 0,
        reason: None,
        credential: Some(credential.name.clone()),
    };
    let stream = match open(state, credential).await {
        Ok(stream) => stream,
        Err((address, reason)) => {
            event.allowed = false;
            event.address = address;
            let body = format!("aac-egress: gateway: {reason}\n");
            let response = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            let _ = client.shutdown().await;
            event.reason = Some(reason);
            state.events.send(event);
            return;
        }
    };
    event.address = Some(stream.address.to_string());
    let mut out = upstream_head(&head, credential, &format!("{}{rest}", upstream.base_path));
    out.extend_from_slice(&head.rest);
    event.bytes_up += out.len() as u64;
    let result = match stream.io {
        Io::Plain(mut upstream) => match upstream.write_all(&out).await {
            Ok(()) => copy_both_ways(client, upstream, &mut event).await,
            Err(err) => Err(format!("writing upstream: {err}")),
        },
        Io::Tls(mut upstream) => match upstream.write_all(&out).await {
            Ok(()) => copy_both_ways(client, *upstream, &mut event).await,
            Err(err) => Err(format!("writing upstream: {err}")),
        },
    };
    if let Err(reason) = result {
        event.reason = Some(reason);
    }
    state.events.send(event);
}

/// The credential `/cred/<NAME><rest>` names and the rest (empty, or from `/` or `?`).
fn resolve_route<'a>(
    path: &'a str,
    state: &'a ProxyOptions,
) -> Result<(&'a Credential, &'a str), String> {
    let Some(after) = path.strip_prefix(ROUTE_PREFIX) else {
        return Err(format!(
            "`{}` is not a credential gateway route (`{ROUTE_PREFIX}<NAME>/…`), and a proxy request needs an absolute URI",
            shorten(path)
        ));
    };
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (name, rest) = after.split_at(end);
    let credential = state.credentials.get(name).ok_or_else(|| {
        format!(
            "no credential named `{}` is bound to a destination in this profile",
            shorten(name)
        )
    })?;
    let path_only = rest.split('?').next().unwrap_or("");
    let lowered = path_only.to_ascii_lowercase();
    if path_only.split('/').any(|segment| segment == "..")
        || lowered.contains("%2e%2e")
        || lowered.contains("%2f")
    {
        return Err(format!(
            "the gateway path `{}` leaves the credential's base path",
            shorten(path)
        ));
    }
    Ok((credential, rest))
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// The head sent upstream: the client's headers minus hop-by-hop ones and the credential's own
/// header (the placeholder), then `Host`, the real header and `Connection: close`.
fn upstream_head(head: &Head, credential: &Credential, path: &str) -> Vec<u8> {
    let path = if path.is_empty() || path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let mut out = format!("{} {path} HTTP/1.{}\r\n", head.method, head.minor_version).into_bytes();
    for (name, value) in &head.headers {
        if DROPPED.iter().any(|d| name.eq_ignore_ascii_case(d))
            || name.eq_ignore_ascii_case(&credential.header_name)
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Host: {}\r\n", credential.upstream.host_header()).as_bytes());
    out.extend_from_slice(credential.header_name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(credential.header_value());
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

struct Opened {
    io: Io,
    address: SocketAddr,
}

/// Connects to the credential's upstream (a public address unless it is marked private), over
/// TLS for `https`.
async fn open(
    state: &ProxyOptions,
    credential: &Credential,
) -> Result<Opened, (Option<String>, String)> {
    let upstream = &credential.upstream;
    let addresses = state
        .resolver
        .resolve(&upstream.host, upstream.port)
        .await
        .map_err(|err| (None, format!("could not resolve {}: {err}", upstream.host)))?;
    let stream = connect_any(
        addresses,
        credential.private,
        &format!("credential {}'s upstream {upstream}", credential.name),
    )
    .await?;
    let address = stream
        .peer_addr()
        .map_err(|err| (None, format!("the upstream connection broke: {err}")))?;
    if !upstream.tls {
        return Ok(Opened {
            io: Io::Plain(stream),
            address,
        });
    }
    let name = ServerName::try_from(upstream.host.clone()).map_err(|err| {
        (
            None,
            format!("`{}` is not a TLS server name: {err}", upstream.host),
        )
    })?;
    let tls = tls_connector().connect(name, stream).await.map_err(|err| {
        (
            Some(address.to_string()),
            format!("TLS with {upstream} failed: {err}"),
        )
    })?;
    Ok(Opened {
        io: Io::Tls(Box::new(tls)),
        address,
    })
}

/// One TLS client for every gateway: the web PKI roots, rustls's safe defaults, HTTP/1.1.
fn tls_connector() -> TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls's default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    });
    TlsConnector::from(config.clone())
}
