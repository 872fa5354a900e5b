//! # aac-sdk
//!
//! Everything a plugin author needs to write an aac-host plugin in Rust:
//!
//! * a **backend adapter** implements [`Backend`] and calls [`export_backend!`];
//! * a **resource-bundle materializer** implements [`Materializer`] and calls [`export_materializer!`].
//!
//! Inside a turn, [`process::Command`] runs processes in the run's sandbox (with a line iterator over
//! their output), [`events`] emits events (the well-known kinds typed in [`events::kinds`]) and
//! [`log`] writes into the host's logs. [`config::parse`] reads the backend's settings into a type
//! of its own; [`Exit::outcome`] turns a process's end into the turn's result the standard way;
//! [`Tail`] keeps a bounded stderr tail to explain a crash.
//!
//! The WIT bindings are generated inside the crate and kept private: everything a plugin needs is
//! re-exported here.
//!
//! ```ignore
//! use aac_sdk::{Backend, CommandInfo, RunInfo, TurnResult};
//!
//! struct Echo;
//!
//! impl Backend for Echo {
//!     fn start(_run: RunInfo) -> Result<Self, aac_sdk::StartError> {
//!         Ok(Echo)
//!     }
//!     fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
//!         aac_sdk::events::emit_message(&command.prompt);
//!         TurnResult::completed()
//!     }
//! }
//!
//! aac_sdk::export_backend!(Echo);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2`; the resulting `.wasm` is the plugin.

pub mod archive;
pub mod config;
pub mod events;
pub mod exit;
pub mod log;
pub mod modes;
pub mod process;

mod backend;
// Public only for the export macros (through `__private`); plugins use the re-exports.
#[doc(hidden)]
#[path = "bindings.rs"]
pub mod __bindings;
use __bindings as bindings;
mod capabilities;
mod materializer;
mod output_gate;
mod tail;
mod types;

pub use capabilities::Capabilities;
pub use exit::{Exit, Outcome};
pub use process::{Command, Line, Process, Stream};
pub use tail::Tail;

pub use backend::{Backend, SessionExport};
pub use bindings::backend::exports::aac::plugin::adapter::{StartError, StartFailure};
pub use materializer::{
    BundleLimits, BundleRef, BundleSource, MaterializeError, Materializer, Summary,
};

pub use bindings::backend::aac::plugin::types::{
    CommandInfo, Event, FailureKind, PluginInfo, RunInfo, TerminalStatus, TurnResult,
};

/// The WIT package version this SDK targets. The host refuses plugins built for another one.
pub const WIT_VERSION: &str = "0.2.1";

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__bindings as bindings;
    pub use crate::backend::describe_with_defaults;
    pub use crate::materializer::{describe_materializer_with_defaults, materialize_with};
}
