//! A backend built from the WIT alone (no SDK) whose `describe` blocks forever on a WASI clock
//! pollable: it uses no CPU, so only a wall-clock deadline (or a cancel) ends the call.

// Only a wasm component: natively (workspace builds) the crate is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aac:plugin/backend@0.2.1",
});

use aac::plugin::types::{CommandInfo, PluginInfo, RunInfo, TerminalStatus, TurnResult};
use exports::aac::plugin::adapter::{Guest, GuestSession, Session, StartError};

fn wait_forever() -> ! {
    loop {
        wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX).block();
    }
}

struct Stuck;

impl Guest for Stuck {
    type Session = Stuck;

    fn describe() -> PluginInfo {
        wait_forever()
    }
}

impl GuestSession for Stuck {
    fn start(_run: RunInfo) -> Result<Session, StartError> {
        Ok(Session::new(Stuck))
    }

    fn run_turn(&self, _command: CommandInfo) -> TurnResult {
        TurnResult {
            status: TerminalStatus::Completed,
            failure_kind: None,
            message: None,
            thread_id: None,
            turn_id: None,
        }
    }

    fn close(&self) {}
}

export!(Stuck);
