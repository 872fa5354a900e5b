//! `execute_tool {gen_ai.tool.name}` spans (OpenTelemetry GenAI conventions) built from the tool
//! events a backend emits: `command.started`/`command.completed` (a shell command),
//! `tool.started`/`tool.completed` (any other tool) and `file.changed` (which ends a file tool
//! Claude Code started as `tool.started`). Each span is a child of the turn's `invoke_agent` span
//! and runs from the start event's emit time to the end event's.
//!
//! The spans go straight to the exporter's tracer with those times (a `tracing` span would take
//! the times this code runs at). Everything is bounded: at most [`MAX_OPEN`] calls open at once
//! and [`MAX_PER_TURN`] spans a turn (calls past either get no span and are counted on the turn's
//! span), attribute values cut to [`MAX_ATTRIBUTE_BYTES`], and calls still open when the turn ends
//! end with it, marked unfinished. Attributes are the tool's name, the call's id, the exit code and
//! a fixed error class: never a command line, an argument or an output (payloads are redacted
//! before they get here, but a command line may hold a secret nobody configured).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use serde_json::Value;

use crate::outcome::TurnEvent;

/// Most tool calls open at once in one turn; later starts get no span until some end.
pub const MAX_OPEN: usize = 256;
/// Most `execute_tool` spans of one turn.
pub const MAX_PER_TURN: usize = 4096;
/// Longest attribute value (tool name, call id), in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 128;
/// `gen_ai.tool.name` of `command.*` events: the agent's shell tool.
pub const SHELL_TOOL: &str = "shell";
/// `error.type` of a call the turn ended before it completed.
pub const UNFINISHED: &str = "unfinished";

/// The open tool calls of one turn and the spans they become.
pub struct ToolSpans {
    tracer: SdkTracer,
    /// The turn's `invoke_agent` span.
    parent: Context,
    open: Vec<OpenCall>,
    started: usize,
    dropped: u64,
}

struct OpenCall {
    /// The call's id (cut), `None` when the event carried none.
    id: Option<String>,
    name: String,
    span: Span,
    started: SystemTime,
}

/// What the turn's tool calls came to, for its `invoke_agent` span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolSpanCounts {
    /// Spans started.
    pub spans: u64,
    /// Calls that got no span (past [`MAX_OPEN`] or [`MAX_PER_TURN`]).
    pub dropped: u64,
    /// Calls still open when the turn ended.
    pub unfinished: u64,
}

enum Phase {
    Start,
    End,
}

impl ToolSpans {
    /// Spans under `agent` (the turn's `invoke_agent` span), when traces are exported and that
    /// span is recorded; `None` otherwise, and the turn's events cost nothing here.
    pub fn for_turn(agent: &tracing::Span) -> Option<Self> {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let tracer = crate::telemetry::tracer()?;
        let parent = agent.context();
        if !parent.span().span_context().is_valid() {
            return None;
        }
        Some(Self::new(tracer, parent))
    }

    /// Spans of `tracer` under `parent`.
    pub fn new(tracer: SdkTracer, parent: Context) -> Self {
        Self {
            tracer,
            parent,
            open: Vec::new(),
            started: 0,
            dropped: 0,
        }
    }

    /// Looks at one event of the turn; only the tool events above do anything.
    pub fn on_event(&mut self, event: &TurnEvent) {
        let (phase, shell) = match event.kind.as_str() {
            "command.started" => (Phase::Start, true),
            "command.completed" => (Phase::End, true),
            "tool.started" => (Phase::Start, false),
            "tool.completed" | "file.changed" => (Phase::End, false),
            _ => return,
        };
        let at = emitted_at(event);
        let id = call_id(&event.payload);
        let name = if shell {
            SHELL_TOOL.to_owned()
        } else {
            match event.payload.get("tool").and_then(Value::as_str) {
                Some(tool) if !tool.is_empty() => cut(tool),
                // `file.changed` of codex names no tool and was never started: nothing to end.
                _ if event.kind == "file.changed" => String::new(),
                _ => "unknown".to_owned(),
            }
        };
        match phase {
            Phase::Start => self.start(id, name, at),
            Phase::End => self.end(id.as_deref(), &name, &event.payload, shell, at),
        }
    }

    fn start(&mut self, id: Option<String>, name: String, at: SystemTime) {
        // Checked first: past it, a flood of starts costs no search.
        if self.started >= MAX_PER_TURN {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        // A call started again (codex's `item.updated` of an MCP call) keeps its first start.
        if id.is_some() && self.open.iter().any(|call| call.id == id) {
            return;
        }
        if self.open.len() >= MAX_OPEN {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", name.clone()),
        ];
        if let Some(id) = &id {
            attributes.push(KeyValue::new("gen_ai.tool.call.id", id.clone()));
        }
        let span = self
            .tracer
            .span_builder(format!("execute_tool {name}"))
            .with_kind(SpanKind::Internal)
            .with_start_time(at)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.parent);
        self.started += 1;
        self.open.push(OpenCall {
            id,
            name,
            span,
            started: at,
        });
    }

    fn end(&mut self, id: Option<&str>, name: &str, payload: &Value, shell: bool, at: SystemTime) {
        // By id; an id-less end takes the oldest id-less call of its tool.
        let found = self.open.iter().position(|call| match id {
            Some(id) => call.id.as_deref() == Some(id),
            None => call.id.is_none() && call.name == name,
        });
        let Some(index) = found else {
            // Ended without a start we hold (never started, or started past the bounds).
            return;
        };
        let OpenCall {
            mut span, started, ..
        } = self.open.remove(index);
        let exit_code = payload.get("exit_code").and_then(Value::as_i64);
        if let Some(code) = exit_code.filter(|_| shell) {
            span.set_attribute(KeyValue::new("process.exit.code", code));
        }
        if let Some((error_type, description)) =
            failure(payload, shell.then_some(exit_code).flatten())
        {
            span.set_attribute(KeyValue::new("error.type", error_type));
            span.set_status(Status::error(description));
        }
        span.end_with_timestamp(at.max(started));
    }

    /// Ends the calls still open, marked unfinished, at `at`; the counts of the turn.
    pub fn finish(&mut self, at: SystemTime) -> ToolSpanCounts {
        let unfinished = self.open.len() as u64;
        for OpenCall {
            mut span, started, ..
        } in self.open.drain(..)
        {
            span.set_attribute(KeyValue::new("error.type", UNFINISHED));
            span.set_status(Status::error(
                "the turn ended before the tool call completed",
            ));
            span.end_with_timestamp(at.max(started));
        }
        ToolSpanCounts {
            spans: self.started as u64,
            dropped: self.dropped,
            unfinished,
        }
    }
}

impl Drop for ToolSpans {
    /// A turn that ends without [`ToolSpans::finish`] (stopped by the host) still ends its calls.
    fn drop(&mut self) {
        if !self.open.is_empty() {
            self.finish(SystemTime::now());
        }
    }
}

/// How the call failed, if it did: `error.type` (a fixed class, or the exit code as text, as HTTP
/// spans use the status code) and the status description.
fn failure(payload: &Value, exit_code: Option<i64>) -> Option<(String, String)> {
    if let Some(code) = exit_code.filter(|code| *code != 0) {
        return Some((code.to_string(), format!("exited with code {code}")));
    }
    let status = payload.get("status").and_then(Value::as_str);
    if let Some(status @ ("failed" | "declined")) = status {
        return Some((status.to_owned(), format!("the tool call {status}")));
    }
    let is_error = payload.get("is_error").and_then(Value::as_bool) == Some(true);
    let error = payload.get("error").is_some_and(|e| !e.is_null());
    (is_error || error).then(|| {
        (
            "tool_error".to_owned(),
            "the tool reported an error".to_owned(),
        )
    })
}

/// The call's id: a string (or a number) in the payload's `id`, cut.
fn call_id(payload: &Value) -> Option<String> {
    match payload.get("id")? {
        Value::String(id) if !id.is_empty() => Some(cut(id)),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The runner's emit time of `event`, or now for an event that carries none.
fn emitted_at(event: &TurnEvent) -> SystemTime {
    event
        .emitted_at_ms
        .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// `text`, or its first bytes and `…` when it is longer than [`MAX_ATTRIBUTE_BYTES`] (cut on a
/// character boundary; the whole stays within the bound).
fn cut(text: &str) -> String {
    const MARKER: &str = "…";
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_ATTRIBUTE_BYTES - MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARKER}", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{
        SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

    use super::*;

    #[derive(Clone, Debug, Default)]
    struct Exported(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Exported {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    const PARENT: u64 = 0x00f0_67aa_0ba9_02b7;

    fn spans() -> (ToolSpans, Exported, SdkTracerProvider) {
        let exported = Exported::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let parent = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(PARENT),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        (
            ToolSpans::new(provider.tracer("test"), parent),
            exported,
            provider,
        )
    }

    fn event(kind: &str, at_ms: u64, payload: Value) -> TurnEvent {
        TurnEvent {
            seq: 1,
            command_id: "c1".into(),
            kind: kind.into(),
            payload,
            attempt_id: None,
            emitted_at_ms: Some(at_ms),
            received_at_ms: None,
        }
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    fn ms(at: SystemTime) -> u128 {
        at.duration_since(UNIX_EPOCH).unwrap().as_millis()
    }

    #[test]
    fn a_shell_call_is_a_child_span_from_its_start_to_its_end_with_the_exit_code() {
        let (mut tools, exported, _provider) = spans();
        let start = 1_800_000_000_000;
        tools.on_event(&event(
            "command.started",
            start,
            serde_json::json!({"id": "item_1", "command": "bash -lc 'echo SECRET'"}),
        ));
        tools.on_event(&event(
            "output.stdout",
            start + 1,
            serde_json::json!({"text": "x"}),
        ));
        tools.on_event(&event(
            "command.started",
            start + 2,
            serde_json::json!({"id": "item_2", "command": "false"}),
        ));
        tools.on_event(&event(
            "command.completed",
            start + 40,
            serde_json::json!({"id": "item_1", "command": "bash -lc 'echo SECRET'", "exit_code": 0, "status": "completed"}),
        ));
        tools.on_event(&event(
            "command.completed",
            start + 50,
            serde_json::json!({"id": "item_2", "command": "false", "exit_code": 1, "status": "failed"}),
        ));
        let counts = tools.finish(SystemTime::now());
        assert_eq!(
            counts,
            ToolSpanCounts {
                spans: 2,
                dropped: 0,
                unfinished: 0
            }
        );
        let spans = exported.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2, "{spans:#?}");
        let ok = &spans[0];
        assert_eq!(ok.name, "execute_tool shell");
        assert_eq!(ok.span_kind, SpanKind::Internal);
        assert_eq!(ok.parent_span_id, SpanId::from(PARENT));
        assert_eq!(ms(ok.start_time), u128::from(start));
        assert_eq!(ms(ok.end_time), u128::from(start + 40));
        assert_eq!(
            attribute(ok, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert_eq!(attribute(ok, "gen_ai.tool.name").as_deref(), Some("shell"));
        assert_eq!(
            attribute(ok, "gen_ai.tool.call.id").as_deref(),
            Some("item_1")
        );
        assert_eq!(attribute(ok, "process.exit.code").as_deref(), Some("0"));
        assert_eq!(attribute(ok, "error.type"), None);
        assert_eq!(ok.status, Status::Unset);
        let failed = &spans[1];
        assert_eq!(
            attribute(failed, "gen_ai.tool.call.id").as_deref(),
            Some("item_2")
        );
        assert_eq!(attribute(failed, "error.type").as_deref(), Some("1"));
        assert_eq!(failed.status, Status::error("exited with code 1"));
        for span in &spans {
            assert!(
                span.attributes
                    .iter()
                    .all(|kv| !kv.value.to_string().contains("SECRET")
                        && !kv.value.to_string().contains("false")),
                "no command text in attributes: {span:#?}"
            );
        }
    }

    #[test]
    fn other_tools_end_by_id_with_their_error_and_a_restart_keeps_the_first_start() {
        let (mut tools, exported, _provider) = spans();
        let mcp = serde_json::json!({"id": "item_3", "server": "docs", "tool": "search", "status": "in_progress"});
        tools.on_event(&event("tool.started", 1000, mcp.clone()));
        tools.on_event(&event("tool.started", 1005, mcp));
        tools.on_event(&event(
            "tool.started",
            1010,
            serde_json::json!({"id": "toolu_2", "tool": "Write", "input": {}}),
        ));
        tools.on_event(&event(
            "tool.completed",
            1020,
            serde_json::json!({"id": "item_3", "tool": "search", "error": {"message": "no"}, "status": "failed"}),
        ));
        tools.on_event(&event(
            "file.changed",
            1030,
            serde_json::json!({"id": "toolu_2", "tool": "Write", "changes": [], "status": "completed"}),
        ));
        // Codex's file changes were never started: no span.
        tools.on_event(&event(
            "file.changed",
            1040,
            serde_json::json!({"id": "item_9", "changes": [], "status": "completed"}),
        ));
        assert_eq!(tools.finish(SystemTime::now()).spans, 2);
        let spans = exported.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2, "{spans:#?}");
        assert_eq!(spans[0].name, "execute_tool search");
        assert_eq!(ms(spans[0].start_time), 1000, "the first start counts");
        assert_eq!(
            attribute(&spans[0], "error.type").as_deref(),
            Some("failed")
        );
        assert_eq!(spans[1].name, "execute_tool Write");
        assert_eq!(ms(spans[1].end_time), 1030);
        assert_eq!(spans[1].status, Status::Unset);
    }

    #[test]
    fn open_calls_are_bounded_and_end_with_the_turn_marked_unfinished() {
        let (mut tools, exported, _provider) = spans();
        let long_id = "é".repeat(200);
        for i in 0..MAX_OPEN + 10 {
            let id = if i == 0 {
                long_id.clone()
            } else {
                format!("call-{i}")
            };
            tools.on_event(&event(
                "command.started",
                1000,
                serde_json::json!({"id": id}),
            ));
        }
        assert_eq!(tools.open.len(), MAX_OPEN);
        // A completion of a call that got no span changes nothing.
        tools.on_event(&event(
            "command.completed",
            1001,
            serde_json::json!({"id": format!("call-{}", MAX_OPEN + 5), "exit_code": 0}),
        ));
        assert!(exported.0.lock().unwrap().is_empty());
        let counts = tools.finish(UNIX_EPOCH + Duration::from_millis(5000));
        assert_eq!(
            counts,
            ToolSpanCounts {
                spans: MAX_OPEN as u64,
                dropped: 10,
                unfinished: MAX_OPEN as u64
            }
        );
        let spans = exported.0.lock().unwrap().clone();
        assert_eq!(spans.len(), MAX_OPEN);
        assert!(
            spans.iter().all(|s| ms(s.end_time) == 5000
                && attribute(s, "error.type").as_deref() == Some(UNFINISHED))
        );
        let id = attribute(&spans[0], "gen_ai.tool.call.id").unwrap();
        assert!(id.len() <= MAX_ATTRIBUTE_BYTES && id.ends_with('…'), "{id}");
    }

    #[test]
    fn a_turn_of_endless_calls_holds_at_most_the_per_turn_bound() {
        let (mut tools, exported, _provider) = spans();
        for i in 0..MAX_PER_TURN + 100 {
            let id = format!("call-{i}");
            tools.on_event(&event(
                "tool.started",
                1,
                serde_json::json!({"id": id, "tool": "t"}),
            ));
            tools.on_event(&event(
                "tool.completed",
                2,
                serde_json::json!({"id": id, "tool": "t"}),
            ));
        }
        let counts = tools.finish(SystemTime::now());
        assert_eq!(counts.spans, MAX_PER_TURN as u64);
        assert_eq!(counts.dropped, 100);
        assert_eq!(exported.0.lock().unwrap().len(), MAX_PER_TURN);
    }
}
