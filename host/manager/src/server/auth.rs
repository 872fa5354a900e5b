//! Bearer-token auth, checked before any handler runs: a missing or wrong token gets 401 with a
//! JSON error body and has no effect.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Manager;
use crate::error::ManagerError;

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

pub(super) async fn require_bearer(
    State(manager): State<Manager>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        None => ManagerError::Unauthorized("missing bearer token (Authorization: Bearer …)".into())
            .into_response(),
        Some(t) => {
            let ok = manager
                .inner
                .tokens
                .iter()
                .fold(false, |ok, known| ok | same(t.as_bytes(), known.as_bytes()));
            if ok {
                next.run(request).await
            } else {
                ManagerError::Unauthorized("invalid bearer token".into()).into_response()
            }
        }
    }
}
