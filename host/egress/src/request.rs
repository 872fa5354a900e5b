//! The head of a request a sandbox sends to the proxy, read within a size and time bound, and what
//! it asks for.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::policy::split_host_port;

/// A request head (request line and headers) larger than this is refused.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// A client must finish its request head within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Head {
    pub method: String,
    pub target: String,
    pub minor_version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes read after the head (a body's start, or a tunnel's first bytes).
    pub rest: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads one request head from `client`.
pub async fn read_head(client: &mut (impl AsyncRead + Unpin)) -> Result<Head, String> {
    match tokio::time::timeout(HEAD_TIMEOUT, read_head_unbounded(client)).await {
        Ok(head) => head,
        Err(_) => Err(format!(
            "the request head did not arrive within {HEAD_TIMEOUT:?}"
        )),
    }
}

async fn read_head_unbounded(client: &mut (impl AsyncRead + Unpin)) -> Result<Head, String> {
    let mut buffer = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let read = client
            .read(&mut chunk)
            .await
            .map_err(|err| format!("reading the request: {err}"))?;
        if read == 0 {
            return Err("the client closed the connection before a full request head".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => {
                return Ok(Head {
                    method: request.method.unwrap_or_default().to_string(),
                    target: request.path.unwrap_or_default().to_string(),
                    minor_version: request.version.unwrap_or(1),
                    headers: request
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    rest: buffer[length..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!("the request head is larger than {MAX_HEAD} bytes"));
            }
            Err(err) => return Err(format!("not an HTTP request: {err}")),
        }
    }
}

/// What a request asks the proxy for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`: a tunnel.
    Tunnel { host: String, port: u16 },
    /// `GET http://host[:port]/path`: one plain-HTTP request, forwarded as `path`.
    Forward {
        host: String,
        port: u16,
        path: String,
    },
}

/// The destination `head` names, or why it names none the proxy serves.
pub fn target(head: &Head) -> Result<Target, String> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(&head.target)?;
        let port = port.ok_or_else(|| format!("CONNECT `{}` has no port", head.target))?;
        check_host(host)?;
        return Ok(Target::Tunnel {
            host: host.to_string(),
            port,
        });
    }
    let target = &head.target;
    let scheme_end = target
        .find("://")
        .ok_or_else(|| format!("`{target}` is not an absolute http:// URI (this is a proxy)"))?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "scheme `{scheme}` is not forwarded (use CONNECT for https)"
        ));
    }
    let after = &target[scheme_end + 3..];
    let path_start = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..path_start];
    if authority.contains('@') {
        return Err(format!("`{target}` carries user info"));
    }
    let (host, port) = split_host_port(authority)?;
    check_host(host)?;
    let path = match &after[path_start..] {
        "" => "/".to_string(),
        path if path.starts_with('/') => path.to_string(),
        path => format!("/{path}"),
    };
    if let Some(named) = head.header("host") {
        let named = std::str::from_utf8(named).unwrap_or("");
        let named_host = split_host_port(named).map(|(h, _)| h).unwrap_or(named);
        if crate::policy::normalize(named_host) != crate::policy::normalize(host) {
            return Err(format!(
                "the Host header `{named}` names another host than the URI `{authority}`"
            ));
        }
    }
    Ok(Target::Forward {
        host: host.to_string(),
        port: port.unwrap_or(80),
        path,
    })
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err(format!("`{host}` is not a host name or address"));
    }
    Ok(())
}

/// The head to send upstream for a forwarded request: origin-form, hop-by-hop and proxy headers
/// dropped, one request per connection.
pub fn forwarded_head(head: &Head, path: &str) -> Vec<u8> {
    const DROPPED: [&str; 5] = [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "keep-alive",
        "te",
    ];
    let mut out = format!("{} {path} HTTP/1.{}\r\n", head.method, head.minor_version).into_bytes();
    for (name, value) in &head.headers {
        if DROPPED.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head(text: &str) -> Head {
        read_head(&mut text.as_bytes()).await.unwrap()
    }

    #[tokio::test]
    async fn targets_of_connect_and_absolute_uris() {
        let connect = head("CONNECT api.openai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            target(&connect).unwrap(),
            Target::Tunnel {
                host: "api.openai.com".into(),
                port: 443
            }
        );
        let get =
            head("GET http://example.org:8080/a?b HTTP/1.1\r\nHost: example.org:8080\r\n\r\nBODY")
                .await;
        assert_eq!(
            target(&get).unwrap(),
            Target::Forward {
                host: "example.org".into(),
                port: 8080,
                path: "/a?b".into()
            }
        );
        assert_eq!(get.rest, b"BODY");
        let forwarded = String::from_utf8(forwarded_head(&get, "/a?b")).unwrap();
        assert!(
            forwarded.starts_with("GET /a?b HTTP/1.1\r\n"),
            "{forwarded}"
        );
        assert!(
            forwarded.ends_with("Connection: close\r\n\r\n"),
            "{forwarded}"
        );
    }

    #[tokio::test]
    async fn refuses_what_it_does_not_serve() {
        for (text, why) in [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "absolute"),
            ("GET https://a/ HTTP/1.1\r\n\r\n", "CONNECT"),
            ("GET http://u@a/ HTTP/1.1\r\n\r\n", "user info"),
            ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", "Host header"),
            ("CONNECT a HTTP/1.1\r\n\r\n", "no port"),
        ] {
            let err = target(&head(text).await).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
