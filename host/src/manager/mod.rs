//! The manager protocol v1 and both of its ends.
//!
//! * [`protocol`]: the wire types (runs, commands, leases, events, error bodies);
//! * [`client`]: [`ManagerClient`], the typed HTTP client with its retry policy;
//! * [`server`]: the embedded manager, an axum server ([`server::start`], [`server::serve`]);
//! * [`store`]: its durable redb store;
//! * [`clock`]: the time leases are measured against ([`SystemClock`], [`ManualClock`] for tests);
//! * [`error`]: the manager's errors and their HTTP replies.
//!
//! `docs/protocol.md` describes the protocol; `docs/openapi.yaml` is its OpenAPI 3.1 description.

pub mod client;
pub mod clock;
pub mod error;
pub mod protocol;
pub mod server;
pub mod store;

pub use client::{ClientError, ManagerClient, RetryPolicy};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ManagerError;
pub use server::{Manager, ManagerConfig, ManagerHandle};
pub use store::{LeasePolicy, Store};
