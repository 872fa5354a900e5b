//! Bearer-token auth, checked before any handler runs: a missing or unknown token gets 401, a
//! token whose role may not call the endpoint 403 (see [`super::access`]), each with a JSON
//! error body and no effect. The role goes into the request's extensions for the handlers.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Manager;
use super::access;
use crate::error::ManagerError;

pub(super) async fn require_bearer(
    State(manager): State<Manager>,
    mut request: Request,
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
    let Some(presented) = presented else {
        return ManagerError::Unauthorized("missing bearer token (Authorization: Bearer …)".into())
            .into_response();
    };
    let Some(role) = manager.tokens().role_of(presented) else {
        return ManagerError::Unauthorized("invalid bearer token".into()).into_response();
    };
    let side = access::side(request.method(), request.uri().path());
    if !side.allows(role) {
        return ManagerError::Forbidden(format!(
            "a {role} token may not call {} {}; this endpoint needs a {} token",
            request.method(),
            request.uri().path(),
            side.describe()
        ))
        .into_response();
    }
    request.extensions_mut().insert(role);
    next.run(request).await
}
