//! Output the host would drop is not built: before each output event the SDK asks the host whether
//! it takes output now (`output-open`); while it does not (past the rate or the turn's bytes), the
//! event is skipped and counted, and the count is reported (`skipped-output`) before the next event
//! the plugin emits and at the end of the turn, so the host's marker says how many and where.
//! A flood then costs the plugin a line split per line, not an event it would pay for and lose.

use std::cell::Cell;

use crate::bindings::backend::aac::plugin::events as host;

thread_local! {
    /// Output events skipped since the last report.
    static SKIPPED: Cell<u64> = const { Cell::new(0) };
}

/// Whether to build and emit the next output event; counts it as skipped when not.
pub(crate) fn admit() -> bool {
    if host::output_open() {
        report_skipped();
        true
    } else {
        SKIPPED.with(|skipped| skipped.set(skipped.get().saturating_add(1)));
        false
    }
}

/// Reports the output skipped since the last report, if any.
pub(crate) fn report_skipped() {
    let skipped = SKIPPED.with(|skipped| skipped.replace(0));
    if skipped > 0 {
        host::skipped_output(skipped);
    }
}
