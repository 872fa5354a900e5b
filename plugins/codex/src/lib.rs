//! The `codex` backend: drives the Codex CLI inside the run's sandbox.
//!
//! The first command of a run starts a thread with `codex exec --json`; later commands resume it
//! with `codex exec resume <thread_id> --json`. Each JSONL line becomes ordered aac events; the
//! process's end and the stream's last words decide the turn's status. See docs/plugins/codex.md.
//!
//! [`jsonl`], [`verdict`] and [`settings`] are plain Rust (no WIT), compiled natively for unit tests
//! and the parse benchmark; the WIT glue exists only in the wasm build.

pub mod jsonl;
pub mod settings;
pub mod verdict;

#[cfg(target_arch = "wasm32")]
mod plugin;
