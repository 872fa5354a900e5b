//! W3C trace context in and out of `tracing` spans: a client's `TRACEPARENT`, the context a
//! manager stored with a run or command, and the headers a client sends.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::manager::trace_context::{TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext};

/// The trace context a parent process handed down in `TRACEPARENT` (and `TRACESTATE`), as CI
/// systems and `otel-cli` do; a malformed one is an error naming the variable.
pub fn from_env() -> Result<Option<TraceContext>, String> {
    let Some(parent) = std::env::var("TRACEPARENT")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let state = std::env::var("TRACESTATE").ok();
    TraceContext::parse(&parent, state.as_deref())
        .map(Some)
        .map_err(|why| format!("TRACEPARENT/TRACESTATE: {why}"))
}

fn extract(trace: &TraceContext) -> opentelemetry::Context {
    let mut carrier = HashMap::new();
    carrier.insert(TRACEPARENT_HEADER.to_owned(), trace.traceparent.clone());
    if let Some(state) = &trace.tracestate {
        carrier.insert(TRACESTATE_HEADER.to_owned(), state.clone());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` (not yet entered) a child of the remote span `trace` names. Without an exporter
/// this does nothing.
pub fn join(span: &tracing::Span, trace: Option<&TraceContext>) {
    if let Some(trace) = trace {
        let _ = span.set_parent(extract(trace));
    }
}

/// Makes `span` (not yet entered) a child of `trace` when that is another trace than the one
/// `current` belongs to, with a link to `current`; otherwise it stays `current`'s child.
pub fn join_or_link(span: &tracing::Span, trace: Option<&TraceContext>, current: &tracing::Span) {
    let Some(trace) = trace else {
        return;
    };
    let local = current.context();
    let local = local.span().span_context().clone();
    if !local.is_valid() {
        return;
    }
    if local.trace_id().to_string() != trace.trace_id() {
        let _ = span.set_parent(extract(trace));
        span.add_link(local);
    }
}

/// The context to send on as `traceparent`/`tracestate`: `span`'s own when an exporter records
/// it, else `fallback` (what the caller received) unchanged.
pub fn outgoing(span: &tracing::Span, fallback: Option<TraceContext>) -> Option<TraceContext> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return fallback;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let parent = carrier.get(TRACEPARENT_HEADER)?;
    TraceContext::parse(parent, carrier.get(TRACESTATE_HEADER).map(String::as_str))
        .ok()
        .or(fallback)
}
