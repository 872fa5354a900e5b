//! aac-manager owns the manager of protocol v1 and the runner's end of it: the durable store, the
//! HTTP server and the typed client. The wire types come from `aac-protocol` (re-exported as
//! [`protocol`] and [`outcome`]). It must not depend on wasmtime, bollard or any other aac crate
//! than `aac-protocol`: a team that runs only the manager, or a client, takes none of the runner.
//!
//! * [`protocol`]: the wire types (runs, commands, leases, events, error bodies);
//! * [`client`]: [`ManagerClient`], the typed HTTP client with its retry policy;
//! * [`server`]: the embedded manager, an axum server ([`server::start`], [`server::serve`]);
//! * [`store`]: its durable redb store;
//! * [`tokens`]: bearer tokens and their roles (runner, client, admin), token files;
//! * [`clock`]: the time leases are measured against ([`SystemClock`], [`ManualClock`] for tests);
//! * [`error`]: the manager's errors and their HTTP replies.
//!
//! `docs/protocol.md` describes the protocol; `docs/openapi.yaml` is its OpenAPI 3.1 description.

pub mod client;
pub mod clock;
pub mod error;
pub mod server;
pub mod store;
pub mod tokens;

pub use aac_protocol::{outcome, protocol, results, trace_context};
pub use client::{ClientError, ManagerClient, RetryPolicy};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ManagerError;
pub use server::{Manager, ManagerConfig, ManagerHandle};
pub use store::{LeasePolicy, Store};
