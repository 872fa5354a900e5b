//! # aac-sdk
//!
//! Everything a plugin author needs to write an aac-host plugin in Rust:
//!
//! * a **backend adapter** implements [`Backend`] and calls [`export_backend!`];
//! * a **resource-bundle materializer** implements [`Materializer`] and calls [`export_materializer!`].
//!
//! Inside a turn, [`process::Command`] runs processes in the run's sandbox (with a line iterator over
//! their output), [`events`] emits typed events and [`log`] writes into the host's logs.
//!
//! ```ignore
//! use aac_sdk::{Backend, CommandInfo, RunInfo, TurnResult};
//!
//! struct Echo;
//!
//! impl Backend for Echo {
//!     fn start(_run: RunInfo) -> Result<Self, String> {
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
pub mod bindings;
pub mod config;
pub mod events;
pub mod log;
pub mod process;

mod backend;
mod capabilities;
mod materializer;
mod output_gate;
mod types;

pub use process::{Command, Line, Process, Stream};

pub use backend::{Backend, SessionExport};
pub use materializer::{BundleLimits, BundleRef, MaterializeError, Materializer, Summary};

pub use bindings::backend::aac::plugin::types::{
    CommandInfo, Event, FailureKind, PluginInfo, RunInfo, TerminalStatus, TurnResult,
};

/// The WIT package version this SDK targets. The host refuses plugins built for another one.
pub const WIT_VERSION: &str = "0.1.0";

#[doc(hidden)]
pub mod __private {
    pub use crate::backend::describe_with_defaults;
    pub use crate::materializer::{describe_materializer_with_defaults, materialize_with};
}
