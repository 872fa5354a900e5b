//! aac-host: a host runner for AI coding-agent runs. This crate owns the binary and what wires the
//! other crates together: the runner ([`runner`]: lease, heartbeat, command loop, event shipping,
//! pool mode), bundles in and results out ([`results`]), `aac.toml` ([`config`]), one local turn
//! as `aac-host run` does it ([`local`]), transcripts and replay tests of backends ([`replay`])
//! and the command line ([`cli`]). The seams live in their own crates, re-exported here under their
//! old module names so paths such as `aac_host::manager::protocol` keep working:
//!
//! * [`outcome`] and [`manager::protocol`]: `aac-protocol`, the wire types and failure taxonomy;
//! * [`manager`]: `aac-manager`, store, server and client;
//! * [`sandbox`]: `aac-sandbox`, the driver trait, and [`sandbox::docker`]: `aac-sandbox-docker`;
//! * [`plugin`] and [`redact`]: `aac-plugin-host`, the WebAssembly plugin host.
//!
//! Nothing depends on this crate but the end-to-end tests.

pub mod cli;
pub mod config;
pub mod local;
pub mod replay;
pub mod results;
pub mod runner;
pub mod telemetry;

pub use aac_manager as manager;
pub use aac_plugin_host as plugin;
pub use aac_plugin_host::redact;
pub use aac_protocol::outcome;

/// Sandboxes: the driver trait (`aac-sandbox`) and the Docker driver (`aac-sandbox-docker`).
pub mod sandbox {
    pub use aac_sandbox::*;
    pub use aac_sandbox_docker as docker;
}
