//! W3C trace context (`traceparent`, `tracestate`) carried from a client's request through the
//! manager to the runner, so the runner's spans join the client's trace.
//!
//! Clients send the standard `traceparent`/`tracestate` HTTP headers when they create a run or
//! enqueue a command; the manager checks them, stores them with the run or command, and returns
//! them as `trace_context` when a runner claims the run or polls the command.

use serde::{Deserialize, Serialize};

/// The HTTP header of the trace and parent span (`00-<32 hex>-<16 hex>-<2 hex>`).
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The HTTP header of vendor-specific trace state.
pub const TRACESTATE_HEADER: &str = "tracestate";
/// Longest `tracestate` kept: the W3C limit a carrier must propagate (32 members).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A W3C trace context, as the headers carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `version-traceid-parentid-flags`, lower-case hex.
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Checks both values; the error names the header and what is wrong with it.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self, String> {
        let traceparent = traceparent.trim();
        check_traceparent(traceparent)
            .map_err(|why| format!("the `{TRACEPARENT_HEADER}` header is not valid: {why}"))?;
        let tracestate = match tracestate.map(str::trim) {
            None | Some("") => None,
            Some(state) if state.len() > MAX_TRACESTATE_BYTES => {
                return Err(format!(
                    "the `{TRACESTATE_HEADER}` header has {} bytes, over the limit of \
                     {MAX_TRACESTATE_BYTES}",
                    state.len()
                ));
            }
            Some(state) if !state.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
                return Err(format!(
                    "the `{TRACESTATE_HEADER}` header holds characters other than printable ASCII"
                ));
            }
            Some(state) => Some(state.to_owned()),
        };
        Ok(Self {
            traceparent: traceparent.to_owned(),
            tracestate,
        })
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or("")
    }
}

fn check_traceparent(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace, parent, flags] = parts.as_slice() else {
        return Err("expected `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`".into());
    };
    if version.len() != 2 || !hex(version) || *version == "ff" {
        return Err(format!(
            "version {version:?} is not two lower-case hex digits (not ff)"
        ));
    }
    if trace.len() != 32 || !hex(trace) || trace.bytes().all(|b| b == b'0') {
        return Err("the trace id is not 32 lower-case hex digits, not all zero".into());
    }
    if parent.len() != 16 || !hex(parent) || parent.bytes().all(|b| b == b'0') {
        return Err("the parent span id is not 16 lower-case hex digits, not all zero".into());
    }
    if flags.len() != 2 || !hex(flags) {
        return Err(format!("flags {flags:?} are not two lower-case hex digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_context_is_kept_and_names_its_trace() {
        let cx = TraceContext::parse(GOOD, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(cx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn malformed_headers_are_refused_naming_the_header() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let err = TraceContext::parse(bad, None).unwrap_err();
            assert!(err.contains("`traceparent`"), "{bad:?}: {err}");
        }
        let long = "a=b,".repeat(200);
        let err = TraceContext::parse(GOOD, Some(&long)).unwrap_err();
        assert!(err.contains("`tracestate`") && err.contains("512"), "{err}");
    }
}
