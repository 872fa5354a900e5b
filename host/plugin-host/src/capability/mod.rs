//! Host capabilities offered to plugins, one module per WIT interface (like Spin's factors). Each
//! module owns its state, stored in [`SessionState`](super::state::SessionState) (in its `world` when only one world
//! offers it), and implements
//! the generated `Host` trait.
//!
//! Every host call pauses the plugin's CPU budget while it runs: time spent waiting on a process is
//! not the plugin's own CPU time.

pub mod archive;
pub mod declared;
pub mod event_schema;
pub mod events;
pub mod http;
pub mod log;
pub mod modes;
pub mod sandbox;

use super::bindings::backend::aac::plugin::types;
use super::state::{SessionState, WorldState};

impl<W: WorldState> types::Host for SessionState<W> {}
