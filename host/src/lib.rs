//! aac-host: a host runner for AI coding-agent runs.
//!
//! * [`plugin`]: the WebAssembly plugin host (engine, cache, limits, host capabilities);
//! * [`sandbox`]: where plugin processes run (Docker through bollard);
//! * [`local`]: one local turn, plugin + sandbox + workspace, as `aac-host run` does it;
//! * [`runner`]: the runner: lease, heartbeat, command loop, event shipping, pool mode;
//! * [`manager`]: the manager protocol v1, its HTTP client and the embedded manager (axum + redb);
//! * [`config`]: `aac.toml`, the runtime profiles (plugin, versions and images, sandbox limits, secrets);
//! * [`outcome`]: statuses, failure kinds and events shared by all of them;
//! * [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod local;
pub mod manager;
pub mod outcome;
pub mod plugin;
pub mod redact;
pub mod runner;
pub mod sandbox;
