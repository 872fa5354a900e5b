//! The runner's spans that follow the OpenTelemetry GenAI conventions: one `invoke_agent
//! {runtime}` span per turn with the agent's name and its token usage (its tool calls'
//! `execute_tool` spans are built in [`super::tool_spans`]). (The span tree is in
//! docs/operations.md; without an exporter these are ordinary `tracing` spans.)

use tracing::field::Empty;

/// The span of one turn: opening the session (sandbox start) on a run's first command, the
/// plugin's turn and its processes, until its events are delivered.
pub(super) fn invoke_agent_span(runtime: &str) -> tracing::Span {
    tracing::info_span!(
        "invoke_agent",
        otel.name = format!("invoke_agent {runtime}"),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = runtime,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        aac.tool_calls.dropped = Empty,
        aac.tool_calls.unfinished = Empty,
    )
}

/// Token usage of the turn's `agent.usage` events, when it reported any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The turn's token usage and, when some tool calls got no `execute_tool` span or never
/// completed, how many.
pub(super) fn record_turn(span: &tracing::Span, turn: super::metrics::TurnSummary) {
    if let Some(usage) = turn.usage {
        span.record("gen_ai.usage.input_tokens", usage.input_tokens);
        span.record("gen_ai.usage.output_tokens", usage.output_tokens);
    }
    if turn.tools.dropped > 0 {
        span.record("aac.tool_calls.dropped", turn.tools.dropped);
    }
    if turn.tools.unfinished > 0 {
        span.record("aac.tool_calls.unfinished", turn.tools.unfinished);
    }
}
