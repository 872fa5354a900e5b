//! Turning a failed plugin call into a [`TurnOutcome`] that says what happened and to whom.

use aac_protocol::outcome::{FailureKind, TurnOutcome};

use super::PluginIdentity;
use super::state::{SessionState, WorldState};

/// Failure kinds only the host can know (its lease, its sandbox, its limits, its bundle): a plugin
/// claiming one is not believed.
const HOST_ONLY_KINDS: [FailureKind; 8] = [
    FailureKind::LeaseLost,
    FailureKind::SandboxLost,
    FailureKind::ImageUnavailable,
    FailureKind::ResourceBundle,
    FailureKind::BackendCrashed,
    FailureKind::BackendTimeout,
    FailureKind::ResourceExhausted,
    FailureKind::HostError,
];

/// A turn outcome as the plugin reported it, unless it claims a host-only failure kind: that is
/// recorded as the plugin's own failure (`backend-crashed`), its claim kept in the message. (A
/// sandbox the host itself saw lost is reported as `sandbox-lost` by the host regardless.)
pub fn refuse_host_only_kind(who: &PluginIdentity, outcome: TurnOutcome) -> TurnOutcome {
    match outcome.failure_kind {
        Some(kind) if HOST_ONLY_KINDS.contains(&kind) => TurnOutcome {
            failure_kind: Some(FailureKind::BackendCrashed),
            message: Some(format!(
                "{who} reported failure kind `{kind}`, which only the host can report: {}",
                outcome.message.as_deref().unwrap_or("(no message)")
            )),
            ..outcome
        },
        _ => outcome,
    }
}

/// Classifies an error from a call into the plugin. The limits record whether they fired, so a
/// trap caused by them is reported as what it is rather than as a crash.
pub fn classify<W: WorldState>(
    state: &SessionState<W>,
    call: &str,
    err: &wasmtime::Error,
) -> TurnOutcome {
    let who = state.identity.to_string();
    if state.cpu.exceeded {
        return TurnOutcome::failed(
            FailureKind::BackendTimeout,
            format!(
                "{who} used more than its {:?} CPU deadline in `{call}`",
                state.cpu.limit()
            ),
        );
    }
    if let Some(reason) = state.world.event_limit_exceeded() {
        return TurnOutcome::failed(
            FailureKind::ResourceExhausted,
            format!("{who} went past an event limit in `{call}`: {reason}"),
        );
    }
    // A refused grow explains the end only if the plugin did not panic after it: a panic (whose
    // message follows the refusal on stderr) is a crash, to be shown with its text.
    let panicked_since =
        String::from_utf8_lossy(&state.memory.stderr_since_refusal()).contains("panicked at");
    if state.memory.exceeded && !panicked_since {
        return TurnOutcome::failed(
            FailureKind::ResourceExhausted,
            format!("{who} exceeded its memory limit in `{call}`"),
        );
    }
    let mut message = format!("{who} crashed in `{call}`: {}", trap_summary(err));
    let stderr = state.stderr_tail();
    if !stderr.is_empty() {
        message.push_str("\nplugin stderr:\n");
        message.push_str(&stderr);
    }
    if let Some(backtrace) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
        message.push_str(&format!("\nbacktrace:\n{backtrace}"));
    }
    TurnOutcome::failed(FailureKind::BackendCrashed, message)
}

/// What ended the call, without the backtrace wasmtime wraps host errors in (that is appended
/// once, separately).
fn trap_summary(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => {
            let cause = err.root_cause().to_string();
            if cause.contains("unknown handle index") {
                // The component model refused the handle before any host code ran.
                format!(
                    "{cause}: the plugin used a resource handle (a process) that the host never \
                     gave out or that was already dropped"
                )
            } else {
                cause
            }
        }
    }
}

/// Refuses strings a plugin returned that are longer than `result_bytes`: a plugin must not make
/// the host carry (and ship) arbitrarily large results.
pub fn check_result_size<'a>(
    state: &SessionState<impl WorldState>,
    call: &str,
    strings: impl IntoIterator<Item = &'a str>,
) -> Result<(), TurnOutcome> {
    let limit = state.limits.result_bytes;
    match strings.into_iter().map(str::len).max() {
        Some(len) if len > limit => Err(TurnOutcome::failed(
            FailureKind::ResourceExhausted,
            format!(
                "{} returned a string of {len} bytes from `{call}`, over the limit of {limit} bytes",
                state.identity
            ),
        )),
        _ => Ok(()),
    }
}

/// What `describe()` returned, as an error naming the plugin when the call trapped or a string
/// was too large. `fields` are the name, version and description.
pub fn described<T>(
    state: &SessionState<impl WorldState>,
    result: wasmtime::Result<T>,
    fields: impl Fn(&T) -> [&str; 3],
) -> anyhow::Result<T> {
    let info = result.map_err(|err| {
        anyhow::anyhow!(
            classify(state, "describe", &err)
                .message
                .unwrap_or_default()
        )
    })?;
    check_result_size(state, "describe", fields(&info))
        .map_err(|outcome| anyhow::anyhow!(outcome.message.unwrap_or_default()))?;
    Ok(info)
}
