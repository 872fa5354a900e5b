//! Every answer of the manager is JSON, errors included, whatever produced them.
//!
//! * [`require_json`] refuses a request body that is not `application/json` with `415` before
//!   any handler reads it;
//! * [`as_json`] is the last line of defence: an error reply that is not JSON (axum's own
//!   rejections: a path segment that is not UTF-8 after percent-decoding, a body over
//!   [`MAX_REQUEST_BYTES`]) becomes the usual `{"error", "message"}` body with the same status.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ManagerError;
use crate::protocol::{MAX_REQUEST_BYTES, error_code};

/// Whether `headers` announce a body: a non-zero length, or a chunked one of unknown length.
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// `application/json` or `application/<anything>+json`, any parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

pub(super) async fn require_json(request: Request, next: Next) -> Response {
    // Blobs are bytes of any type (tar archives, file contents).
    let blob = request.uri().path().starts_with("/v1/blobs/");
    if !blob && has_body(request.headers()) {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let refused = match &content_type {
            None => {
                Some("a request body needs `Content-Type: application/json` (none given)".into())
            }
            Some(t) if !is_json(t) => Some(format!(
                "a request body must be `application/json`, not {t:?}"
            )),
            Some(_) => None,
        };
        if let Some(message) = refused {
            return ManagerError::UnsupportedMediaType(message).into_response();
        }
    }
    next.run(request).await
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => error_code::UNAUTHORIZED,
        StatusCode::NOT_FOUND => error_code::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => error_code::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => error_code::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => error_code::UNSUPPORTED_MEDIA_TYPE,
        s if s.is_server_error() => error_code::INTERNAL,
        _ => error_code::BAD_REQUEST,
    }
}

pub(super) async fn as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's rejection texts are short; a longer body is cut, not buffered whole.
    let text = to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is over the manager's limit of {MAX_REQUEST_BYTES} bytes (2 MiB); \
             send less per request"
        ),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    let body = crate::protocol::ErrorBody {
        error: code_for(status).to_owned(),
        message,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}
