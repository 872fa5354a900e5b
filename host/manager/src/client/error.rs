//! Why a `ManagerClient` call failed.

use crate::outcome::FailureKind;
use crate::protocol::error_code;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 401: the manager refused the bearer token.
    #[error("{endpoint}: unauthorized: {message}")]
    Unauthorized { endpoint: String, message: String },
    /// 409 `lease-conflict` (claim: another runner holds the run) or `lease-lost` (a runner
    /// mutation with a stale lease token: stop working on the run).
    #[error("{endpoint}: {code}: {message}")]
    Lease {
        endpoint: String,
        code: String,
        message: String,
    },
    /// Any other non-retryable status (4xx), with the manager's error code and message.
    #[error("{endpoint}: HTTP {status} {code}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    /// Retryable failures (429, 5xx, connection errors) went on past the retry deadline.
    #[error("{endpoint}: gave up after {attempts} attempt(s): {last}")]
    Unavailable {
        endpoint: String,
        attempts: u32,
        status: Option<u16>,
        last: String,
    },
    /// The reply was not the JSON the protocol says.
    #[error("{endpoint}: schema-invalid: {message}")]
    SchemaInvalid { endpoint: String, message: String },
    /// The request could not be built (bad base URL, bad id).
    #[error("{endpoint}: {message}")]
    Request { endpoint: String, message: String },
}

impl ClientError {
    /// The endpoint, e.g. `POST /v1/runs/run_1/heartbeat`.
    pub fn endpoint(&self) -> &str {
        match self {
            ClientError::Unauthorized { endpoint, .. }
            | ClientError::Lease { endpoint, .. }
            | ClientError::Status { endpoint, .. }
            | ClientError::Unavailable { endpoint, .. }
            | ClientError::SchemaInvalid { endpoint, .. }
            | ClientError::Request { endpoint, .. } => endpoint,
        }
    }

    /// The HTTP status, when the manager answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Lease { .. } => Some(409),
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Unavailable { status, .. } => *status,
            _ => None,
        }
    }

    pub fn is_lease_lost(&self) -> bool {
        matches!(self, ClientError::Lease { code, .. } if code == error_code::LEASE_LOST)
    }

    pub fn is_lease_conflict(&self) -> bool {
        matches!(self, ClientError::Lease { code, .. } if code == error_code::LEASE_CONFLICT)
    }

    /// The failure kind a runner reports when this error ends its work.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            ClientError::SchemaInvalid { .. } => FailureKind::SchemaInvalid,
            ClientError::Lease { .. } => FailureKind::LeaseLost,
            _ => FailureKind::HostError,
        }
    }
}
