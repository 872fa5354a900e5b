//! aac-protocol owns what a manager and a runner agree on: the wire types of manager protocol v1
//! ([`protocol`]: runs, commands, attempts, leases, events, error codes, `MAX_REQUEST_BYTES`) and
//! the one status and failure taxonomy of plugins, host and manager ([`outcome`]). It is what a
//! third-party client or manager implements against, so it depends on serde alone: it must not
//! depend on tokio, an HTTP stack, wasmtime, bollard or any other aac crate.

pub mod outcome;
pub mod protocol;
pub mod results;
pub mod trace_context;
