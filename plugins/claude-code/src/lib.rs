//! The `claude-code` backend: drives Claude Code inside the run's sandbox.
//!
//! Each command runs `claude -p --output-format stream-json --verbose
//! --dangerously-skip-permissions`; later commands of a run add `--resume <session_id>`. Each
//! stream-json line becomes ordered aac events; the `result` line (or its absence) and the
//! process's end decide the turn's status. An idle watchdog ends a turn whose CLI went silent
//! without a result line. See docs/plugins/claude-code.md.
//!
//! [`stream`], [`verdict`] and [`settings`] are plain Rust (no WIT), compiled natively for unit
//! tests; the WIT glue exists only in the wasm build.

pub mod settings;
pub mod stream;
pub mod verdict;

#[cfg(target_arch = "wasm32")]
mod plugin;
