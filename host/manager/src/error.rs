//! What can go wrong inside the manager, and the HTTP reply each error becomes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::protocol::{ErrorBody, error_code};

/// An error of the embedded manager (store or request). Each maps to one status and error code.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{0}")]
    Unauthorized(String),
    /// A known token whose role may not call the endpoint.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A claim met another runner's live lease.
    #[error("{0}")]
    LeaseConflict(String),
    /// A runner mutation carried a lease token that is not the run's current one.
    #[error("{0}")]
    LeaseLost(String),
    #[error("{0}")]
    RunTerminal(String),
    #[error("{0}")]
    IdConflict(String),
    /// The command's state does not allow this change (see the state machine in docs/protocol.md).
    #[error("{0}")]
    CommandState(String),
    /// A delete of a run that has not ended.
    #[error("{0}")]
    RunNotFinished(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("store: {0}")]
    Storage(String),
}

impl ManagerError {
    pub fn status(&self) -> StatusCode {
        match self {
            ManagerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ManagerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ManagerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ManagerError::NotFound(_) => StatusCode::NOT_FOUND,
            ManagerError::LeaseConflict(_)
            | ManagerError::LeaseLost(_)
            | ManagerError::RunTerminal(_)
            | ManagerError::IdConflict(_)
            | ManagerError::CommandState(_)
            | ManagerError::RunNotFinished(_) => StatusCode::CONFLICT,
            ManagerError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ManagerError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ManagerError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ManagerError::Unauthorized(_) => error_code::UNAUTHORIZED,
            ManagerError::Forbidden(_) => error_code::FORBIDDEN,
            ManagerError::BadRequest(_) => error_code::BAD_REQUEST,
            ManagerError::NotFound(_) => error_code::NOT_FOUND,
            ManagerError::LeaseConflict(_) => error_code::LEASE_CONFLICT,
            ManagerError::LeaseLost(_) => error_code::LEASE_LOST,
            ManagerError::RunTerminal(_) => error_code::RUN_TERMINAL,
            ManagerError::IdConflict(_) => error_code::ID_CONFLICT,
            ManagerError::CommandState(_) => error_code::COMMAND_STATE,
            ManagerError::RunNotFinished(_) => error_code::RUN_NOT_FINISHED,
            ManagerError::PayloadTooLarge(_) => error_code::PAYLOAD_TOO_LARGE,
            ManagerError::UnsupportedMediaType(_) => error_code::UNSUPPORTED_MEDIA_TYPE,
            ManagerError::Storage(_) => error_code::INTERNAL,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for ManagerError {
            fn from(e: $t) -> Self {
                ManagerError::Storage(e.to_string())
            }
        }
    )*};
}

storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

impl IntoResponse for ManagerError {
    fn into_response(self) -> Response {
        if let ManagerError::Storage(msg) = &self {
            tracing::error!(error = %msg, "manager store error");
        }
        let status = self.status();
        let mut resp = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
