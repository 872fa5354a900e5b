//! The proxy on loopback against a loopback upstream: what it lets through, what it refuses, and
//! the event it reports for each.

use std::net::SocketAddr;
use std::sync::Arc;

use aac_egress::{
    AllowRule, Allowlist, EgressProxy, EventSink, NetworkEvent, ProxyOptions, Resolver,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An upstream answering every connection with a fixed HTTP response after reading its head.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buffer[..n]),
                    }
                }
                let first_line = String::from_utf8_lossy(&seen)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let body = format!("upstream saw: {first_line}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    address
}

async fn proxy(
    rules: &[AllowRule],
    resolver: Resolver,
) -> (EgressProxy, mpsc::Receiver<NetworkEvent>) {
    let (events, receiver) = EventSink::channel();
    let proxy = EgressProxy::start(ProxyOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow: Arc::new(Allowlist::new(rules.to_vec())),
        events,
        resolver,
        credentials: Default::default(),
    })
    .await
    .unwrap();
    (proxy, receiver)
}

/// Sends `request` to the proxy and returns everything it answers.
async fn exchange(proxy: &EgressProxy, request: &[u8]) -> String {
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    client.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_allowed_private_name_is_tunnelled_and_forwarded_with_byte_counts() {
    let up = upstream().await;
    let rule = AllowRule::new("localhost", Some(up.port()), true).unwrap();
    let (proxy, mut events) = proxy(&[rule], Resolver::default()).await;

    let request = format!(
        "CONNECT localhost:{0} HTTP/1.1\r\nHost: localhost:{0}\r\n\r\nGET /t HTTP/1.1\r\nHost: x\r\n\r\n",
        up.port()
    );
    let answer = exchange(&proxy, request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 Connection established"),
        "{answer}"
    );
    assert!(answer.contains("upstream saw: GET /t HTTP/1.1"), "{answer}");
    let event = events.recv().await.unwrap();
    assert!(event.allowed, "{event:?}");
    assert_eq!(
        (event.host.as_str(), event.port, event.method.as_str()),
        ("localhost", up.port(), "CONNECT")
    );
    assert!(event.bytes_up > 0 && event.bytes_down > 0, "{event:?}");

    let request = format!(
        "GET http://localhost:{0}/abs?q=1 HTTP/1.1\r\nHost: localhost:{0}\r\nProxy-Connection: keep-alive\r\n\r\n",
        up.port()
    );
    let answer = exchange(&proxy, request.as_bytes()).await;
    assert!(
        answer.contains("upstream saw: GET /abs?q=1 HTTP/1.1"),
        "{answer}"
    );
    let event = events.recv().await.unwrap();
    assert!(event.allowed && event.method == "GET", "{event:?}");
}

#[tokio::test]
async fn names_outside_the_list_ip_literals_and_non_public_answers_are_denied() {
    let up = upstream().await;
    let resolver =
        Resolver::default().with_fixed("rebound.test", vec!["127.0.0.1".parse().unwrap()]);
    let rules = [
        AllowRule::parse(&format!("rebound.test:{}", up.port())).unwrap(),
        AllowRule::parse(&format!("localhost:{}", up.port())).unwrap(),
    ];
    let (proxy, mut events) = proxy(&rules, resolver).await;
    let port = up.port();
    for (request, reason) in [
        (
            format!("CONNECT evil.example:{port} HTTP/1.1\r\n\r\n"),
            "not in the allowlist",
        ),
        (
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
            "IP address",
        ),
        (
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n".to_string(),
            "IP address",
        ),
        (
            format!("CONNECT rebound.test:{port} HTTP/1.1\r\n\r\n"),
            "non-public",
        ),
        (
            format!("GET http://localhost:{port}/ HTTP/1.1\r\n\r\n"),
            "non-public",
        ),
        (
            format!("GET http://rebound.test:{port}/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
            "Host header",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: rebound.test:{port}\r\n\r\n"),
            "absolute",
        ),
        ("garbage\r\n\r\n".to_string(), "not an HTTP request"),
    ] {
        let answer = exchange(&proxy, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{request:?}: {answer}");
        assert!(!answer.contains("upstream saw"), "{request:?}: {answer}");
        let event = events.recv().await.unwrap();
        assert!(!event.allowed, "{request:?}: {event:?}");
        let why = event.reason.clone().unwrap_or_default();
        assert!(why.contains(reason), "{request:?}: {why}");
    }
}

#[tokio::test]
async fn a_tunnel_whose_tls_server_name_differs_is_cut() {
    let up = upstream().await;
    let rule = AllowRule::new("localhost", Some(up.port()), true).unwrap();
    let (proxy, mut events) = proxy(&[rule], Resolver::default()).await;
    let mut request = format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", up.port()).into_bytes();
    request.extend(client_hello("evil.example"));
    let answer = exchange(&proxy, &request).await;
    assert!(!answer.contains("upstream saw"), "{answer}");
    let event = events.recv().await.unwrap();
    assert!(!event.allowed, "{event:?}");
    assert!(event.reason.unwrap().contains("evil.example"));
}

/// A minimal TLS ClientHello record naming `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let mut sni = ((3 + name.len()) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name.as_bytes());
    let mut extensions = vec![0, 0];
    extensions.extend((sni.len() as u16).to_be_bytes());
    extensions.extend(sni);
    let mut body = vec![3, 3];
    body.extend([0u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// A position-dependent pattern, so a lost, doubled or reordered chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

#[tokio::test]
async fn a_tunnel_carries_megabytes_both_ways_intact_and_passes_on_a_half_close() {
    const UP: usize = 3 << 20;
    const DOWN: usize = 5 << 20;
    // An upstream that reads until the client shut its writing half, then answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        socket.read_to_end(&mut received).await.unwrap();
        socket.write_all(&pattern(DOWN, 7)).await.unwrap();
        socket.shutdown().await.unwrap();
        received
    });
    let rule = AllowRule::new("localhost", Some(address.port()), true).unwrap();
    let (proxy, mut events) = proxy(&[rule], Resolver::default()).await;

    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    let head = format!(
        "CONNECT localhost:{0} HTTP/1.1\r\nHost: localhost:{0}\r\n\r\n",
        address.port()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let mut confirm = vec![0u8; "HTTP/1.1 200 Connection established\r\n\r\n".len()];
    client.read_exact(&mut confirm).await.unwrap();
    let (mut reader, mut writer) = client.into_split();
    let sent = pattern(UP, 3);
    let sending = tokio::spawn(async move {
        writer.write_all(&sent).await.unwrap();
        writer.shutdown().await.unwrap();
        writer
    });
    let mut answer = Vec::new();
    reader.read_to_end(&mut answer).await.unwrap();
    drop(sending.await.unwrap());

    assert!(
        server.await.unwrap() == pattern(UP, 3),
        "the upstream got other bytes"
    );
    assert!(answer == pattern(DOWN, 7), "the client got other bytes");
    let event = events.recv().await.unwrap();
    assert!(event.allowed, "{event:?}");
    assert_eq!((event.bytes_up, event.bytes_down), (UP as u64, DOWN as u64));
}
