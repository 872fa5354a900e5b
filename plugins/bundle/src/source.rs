//! Where the archive's bytes come from: the host's `archive` interface for a local archive, or a
//! `wasi:http` GET for `http` bundles. Both are hashed as they are read.

use std::io::{self, Read};

use sha2::{Digest, Sha256};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, IncomingBody, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::{InputStream, StreamError};

/// Hashes (when asked to) and counts every byte read through it.
pub struct Hashing<R> {
    inner: R,
    /// `None` when someone else verifies the archive (the host, for a local one).
    pub hasher: Option<Sha256>,
    pub bytes: u64,
    /// Reading past this many bytes is an error: the bundle is bigger than announced.
    limit: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R, limit: u64, hash: bool) -> Self {
        Self {
            inner,
            hasher: hash.then(Sha256::new),
            bytes: 0,
            limit,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.bytes += n as u64;
        if self.bytes > self.limit {
            return Err(io::Error::other(format!(
                "the bundle is larger than {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// The body of an HTTP response, read as a stream. The stream is dropped before the body.
pub struct HttpBody {
    stream: Option<InputStream>,
    _body: IncomingBody,
}

impl Read for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stream) = &self.stream else {
            return Ok(0);
        };
        match stream.blocking_read(buf.len() as u64) {
            Ok(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(0)
            }
            Err(StreamError::LastOperationFailed(err)) => {
                Err(io::Error::other(err.to_debug_string()))
            }
        }
    }
}

impl Drop for HttpBody {
    fn drop(&mut self) {
        self.stream.take();
    }
}

/// GETs `url` (`http://host[:port]/path` or `https://…`) and returns its body.
pub fn http_get(url: &str) -> Result<HttpBody, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} has no host, or has credentials in it"));
    }
    let request = OutgoingRequest::new(Fields::new());
    let set = request
        .set_method(&Method::Get)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)));
    set.map_err(|()| format!("{url:?} is not a valid request target"))?;
    let future = outgoing_handler::handle(request, None)
        .map_err(|err| format!("GET {url} failed: {err:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("the response never arrived")?
        .map_err(|()| "the response was already taken")?
        .map_err(|err| format!("GET {url} failed: {err:?}"))?;
    let status = response.status();
    if !(200..300).contains(&status) {
        return Err(format!("GET {url} answered HTTP {status}"));
    }
    let body = response
        .consume()
        .map_err(|()| "the response body was already taken")?;
    let stream = body
        .stream()
        .map_err(|()| "the response body stream was already taken")?;
    Ok(HttpBody {
        stream: Some(stream),
        _body: body,
    })
}
