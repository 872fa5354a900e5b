//! The credential gateway on loopback against a loopback upstream: the real header replaces the
//! placeholder, the path is mapped under the upstream's base path, the response streams as the
//! upstream sends it, and a name with no binding (or a path leaving the base) is denied.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aac_egress::credential::PLACEHOLDER;
use aac_egress::{
    Allowlist, Credential, Credentials, EgressProxy, EventSink, HeaderTemplate, NetworkEvent,
    ProxyOptions, Resolver, Upstream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

const SECRET: &str = "sk-real-secret-4711";

/// An upstream that records each request (head and body) and answers with two SSE events, the
/// second only once `release` is notified: a client that sees the first before that sees a stream.
struct SseUpstream {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    release: Arc<Notify>,
}

async fn sse_upstream() -> SseUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(Notify::new());
    let (log, gate) = (seen.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (log, gate) = (log.clone(), gate.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Head, then a body of Content-Length bytes.
                loop {
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: first\n\n")
                    .await;
                gate.notified().await;
                let _ = socket.write_all(b"data: second\n\n").await;
            });
        }
    });
    SseUpstream {
        address,
        seen,
        release,
    }
}

async fn gateway(upstream: &str, private: bool) -> (EgressProxy, mpsc::Receiver<NetworkEvent>) {
    let header = HeaderTemplate::parse("Authorization: Bearer {secret}").unwrap();
    let credential = Credential::new(
        "OPENAI_API_KEY",
        Upstream::parse(upstream).unwrap(),
        &header,
        SECRET,
        private,
    )
    .unwrap();
    let (events, receiver) = EventSink::channel();
    let proxy = EgressProxy::start(ProxyOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow: Arc::new(Allowlist::default()),
        events,
        resolver: Resolver::default(),
        credentials: Arc::new(Credentials::new([credential])),
    })
    .await
    .unwrap();
    (proxy, receiver)
}

/// Reads from `client` until `needle` has arrived; everything read.
async fn read_until(client: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = client.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn the_gateway_swaps_the_placeholder_for_the_secret_and_streams_the_answer() {
    let upstream = sse_upstream().await;
    let (proxy, mut events) = gateway(&format!("http://{}/v1", upstream.address), true).await;
    let body = r#"{"model":"m","stream":true}"#;
    for target in [
        "/cred/OPENAI_API_KEY/responses".to_string(),
        format!("http://{}/cred/OPENAI_API_KEY/responses", proxy.address()),
    ] {
        let mut client = TcpStream::connect(proxy.address()).await.unwrap();
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PLACEHOLDER}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
            proxy.address(),
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        // The first event arrives while the upstream still holds the second back.
        let first = read_until(&mut client, "data: first").await;
        assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
        upstream.release.notify_one();
        read_until(&mut client, "data: second").await;
        drop(client);

        let event = events.recv().await.unwrap();
        assert!(event.allowed, "{event:?}");
        assert_eq!(event.credential.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(
            (event.host.as_str(), event.port),
            ("127.0.0.1", upstream.address.port())
        );
        assert!(
            event.bytes_down > 0 && event.bytes_up > body.len() as u64,
            "{event:?}"
        );
        assert!(!format!("{event:?}").contains(SECRET));
    }
    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert!(
            request.starts_with("POST /v1/responses HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nAuthorization: Bearer {SECRET}\r\n")),
            "{request}"
        );
        assert!(
            !request.contains(PLACEHOLDER),
            "placeholder forwarded: {request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: {}\r\n", upstream.address)),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
        assert!(!request.contains("keep-alive"), "{request}");
        assert!(request.ends_with(body), "{request}");
    }
}

#[tokio::test]
async fn unbound_names_paths_leaving_the_base_and_private_upstreams_are_denied() {
    let upstream = sse_upstream().await;
    let (proxy, mut events) = gateway(&format!("http://{}/v1", upstream.address), true).await;
    for (path, status, why) in [
        (
            "/cred/ANTHROPIC_API_KEY/v1/messages",
            "403",
            "no credential named `ANTHROPIC_API_KEY`",
        ),
        (
            "/cred/OPENAI_API_KEY/../admin",
            "403",
            "leaves the credential's base path",
        ),
        (
            "/cred/OPENAI_API_KEY/%2E%2E/admin",
            "403",
            "leaves the credential's base path",
        ),
        ("/hello", "403", "not a credential gateway route"),
    ] {
        let mut client = TcpStream::connect(proxy.address()).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
        let event = events.recv().await.unwrap();
        assert!(!event.allowed, "{path}: {event:?}");
        assert_eq!(event.kind(), "network.denied");
        assert!(
            event.reason.as_deref().unwrap().contains(why),
            "{path}: {event:?}"
        );
    }
    assert!(upstream.seen.lock().unwrap().is_empty());

    // Bound to a loopback upstream without `private`: refused, nothing sent.
    let (proxy, mut events) = gateway(&format!("http://{}/v1", upstream.address), false).await;
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    client
        .write_all(b"GET /cred/OPENAI_API_KEY/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let event = events.recv().await.unwrap();
    assert_eq!(event.kind(), "network.denied");
    assert!(
        event.reason.as_deref().unwrap().contains("non-public"),
        "{event:?}"
    );
    assert!(upstream.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_https_upstream_is_spoken_to_over_tls_and_a_failed_handshake_is_a_502() {
    // A plain-TCP server where the credential says https: it receives a TLS ClientHello (never
    // the secret in clear), and the handshake fails.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            if let Ok(n) = socket.read(&mut buffer).await {
                log.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
            let _ = socket.write_all(b"HTTP/1.1 400 Not TLS\r\n\r\n").await;
        }
    });
    let (proxy, mut events) = gateway(&format!("https://{address}/v1"), true).await;
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    client
        .write_all(b"GET /cred/OPENAI_API_KEY/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("TLS with https://"), "{answer}");
    let event = events.recv().await.unwrap();
    assert_eq!(event.kind(), "network.denied");
    assert_eq!(event.credential.as_deref(), Some("OPENAI_API_KEY"));
    let received = received.lock().unwrap().clone();
    assert_eq!(received.first(), Some(&0x16), "not a TLS handshake record");
    assert!(
        !received
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes()),
        "the secret went out before TLS"
    );
}
