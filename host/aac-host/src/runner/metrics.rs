//! A runner's Prometheus metrics, in one registry owned here and served on the status listener's
//! `/metrics`. The runner holds an `Arc<RunnerMetrics>` and hands it (not a global) to what it
//! starts: the lease keeper, the event tap of each run.

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::status::StatusReport;
use crate::outcome::TurnEvent;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Runtime {
    runtime: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeStatus {
    runtime: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Tokens {
    runtime: String,
    /// `input`, `output` or `cached` (OpenTelemetry's `gen_ai.token.type`, plus cache reads).
    token_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

fn family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn histograms<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Histogram>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    // 10 ms to ~45 min: a claim, a sandbox start, an agent turn.
    let family = Family::<L, Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.01, 2.0, 18))
    });
    registry.register(name, help, family.clone());
    family
}

/// Every metric of one runner process.
pub struct RunnerMetrics {
    registry: Registry,
    claims: Family<Outcome, Counter>,
    claim_duration: Family<Outcome, Histogram>,
    attempts: Family<RuntimeStatus, Counter>,
    turns: Family<RuntimeStatus, Counter>,
    turn_duration: Family<Runtime, Histogram>,
    first_event: Family<Runtime, Histogram>,
    heartbeat_failures: Counter,
    lease_losses: Counter,
    events_sent: Counter,
    events_dropped: Counter,
    sandbox_starts: Family<Outcome, Counter>,
    plugin_loads: Family<Outcome, Counter>,
    tokens: Family<Tokens, Counter>,
    runs_held: Gauge,
    pool_ready: Family<Pool, Gauge>,
    pool_size: Family<Pool, Gauge>,
}

impl std::fmt::Debug for RunnerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunnerMetrics")
    }
}

impl Default for RunnerMetrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("aac_runner");
        let claims = family(
            &mut r,
            "claims",
            "Claim polls, by outcome (claimed, empty, error)",
        );
        let claim_duration = histograms(
            &mut r,
            "claim_duration_seconds",
            "Time a claim poll took, by outcome",
        );
        let attempts = family(
            &mut r,
            "attempts",
            "Attempts this runner worked on, by runtime and how they ended (completed, failed, blocked, cancelled, released)",
        );
        let turns = family(
            &mut r,
            "turns",
            "Agent turns, by runtime@version and terminal status",
        );
        let turn_duration = histograms(
            &mut r,
            "turn_duration_seconds",
            "Duration of an agent turn, by runtime@version",
        );
        let first_event = histograms(
            &mut r,
            "time_to_first_event_seconds",
            "From a turn's start to its first event, by runtime@version",
        );
        let heartbeat_failures = Counter::default();
        r.register(
            "heartbeat_failures",
            "Heartbeats that failed (unreachable manager or server error)",
            heartbeat_failures.clone(),
        );
        let lease_losses = Counter::default();
        r.register(
            "lease_losses",
            "Leases lost: fenced, refused, or no heartbeat succeeded in time",
            lease_losses.clone(),
        );
        let events_sent = Counter::default();
        r.register(
            "events_sent",
            "Events the manager took",
            events_sent.clone(),
        );
        let events_dropped = Counter::default();
        r.register(
            "events_dropped",
            "Events dropped before shipping (output past the buffer)",
            events_dropped.clone(),
        );
        let sandbox_starts = family(
            &mut r,
            "sandbox_starts",
            "Sandboxes a run started on, warm (from a pool) or cold",
        );
        let plugin_loads = family(
            &mut r,
            "plugin_loads",
            "Plugin loads: compiled, cached (from the artifact cache) or failed",
        );
        let tokens = family(
            &mut r,
            "gen_ai_usage_tokens",
            "Tokens of agent.usage events (gen_ai.usage.*), by runtime and type",
        );
        let runs_held = Gauge::default();
        r.register(
            "runs_held",
            "Runs this runner works on now",
            runs_held.clone(),
        );
        let pool_ready = Family::<Pool, Gauge>::default();
        r.register(
            "pool_ready",
            "Warm sandboxes ready, by runtime|image",
            pool_ready.clone(),
        );
        let pool_size = Family::<Pool, Gauge>::default();
        r.register(
            "pool_size",
            "Warm sandboxes a pool keeps, by runtime|image",
            pool_size.clone(),
        );
        Self {
            registry: r,
            claims,
            claim_duration,
            attempts,
            turns,
            turn_duration,
            first_event,
            heartbeat_failures,
            lease_losses,
            events_sent,
            events_dropped,
            sandbox_starts,
            plugin_loads,
            tokens,
            runs_held,
            pool_ready,
            pool_size,
        }
    }
}

fn outcome(name: &str) -> Outcome {
    Outcome {
        outcome: name.to_owned(),
    }
}

impl RunnerMetrics {
    pub fn claim(&self, result: &str, started: Instant) {
        let label = outcome(result);
        self.claims.get_or_create(&label).inc();
        self.claim_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn attempt_ended(&self, runtime: &str, how: &str, sent: u64, dropped: u64) {
        self.attempts
            .get_or_create(&RuntimeStatus {
                runtime: runtime.to_owned(),
                status: how.to_owned(),
            })
            .inc();
        self.events_sent.inc_by(sent);
        self.events_dropped.inc_by(dropped);
    }

    pub fn turn_ended(&self, runtime: &str, status: &str, started: Instant) {
        self.turns
            .get_or_create(&RuntimeStatus {
                runtime: runtime.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        self.turn_duration
            .get_or_create(&Runtime {
                runtime: runtime.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn heartbeat_failed(&self) {
        self.heartbeat_failures.inc();
    }

    pub fn lease_lost(&self) {
        self.lease_losses.inc();
    }

    pub fn sandbox_started(&self, warm: bool) {
        self.sandbox_starts
            .get_or_create(&outcome(if warm { "warm" } else { "cold" }))
            .inc();
    }

    pub fn plugin_loaded(&self, how: &str) {
        self.plugin_loads.get_or_create(&outcome(how)).inc();
    }

    /// The text exposition, with the held runs and pool fill of `status`.
    pub fn render(&self, status: &StatusReport) -> String {
        self.runs_held
            .set(i64::try_from(status.runs.len()).unwrap_or(i64::MAX));
        for pool in &status.pools {
            let label = Pool {
                pool: pool.pool.clone(),
            };
            self.pool_ready
                .get_or_create(&label)
                .set(i64::try_from(pool.ready).unwrap_or(i64::MAX));
            self.pool_size
                .get_or_create(&label)
                .set(i64::try_from(pool.size).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Watches one run's events for the metrics: the first event of each turn, and `agent.usage`.
pub struct EventTap {
    metrics: std::sync::Arc<RunnerMetrics>,
    turn: Mutex<Option<TurnWatch>>,
}

struct TurnWatch {
    runtime: String,
    command_id: String,
    started: Instant,
    seen_first: bool,
    /// Tokens of the turn's `agent.usage` events, for its trace span.
    usage: Option<super::traces::TurnUsage>,
    /// The `execute_tool` spans of its tool calls, when traces are exported.
    tools: Option<super::tool_spans::ToolSpans>,
}

/// What a turn's events came to, for its `invoke_agent` span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnSummary {
    pub usage: Option<super::traces::TurnUsage>,
    pub tools: super::tool_spans::ToolSpanCounts,
}

impl EventTap {
    pub fn new(metrics: std::sync::Arc<RunnerMetrics>) -> Self {
        Self {
            metrics,
            turn: Mutex::new(None),
        }
    }

    /// A turn of `command_id` starts now on `runtime`, traced as `agent` (its `invoke_agent`
    /// span: the parent of its tool calls' spans).
    pub fn turn_started(&self, runtime: &str, command_id: &str, agent: &tracing::Span) {
        let watch = TurnWatch {
            runtime: runtime.to_owned(),
            command_id: command_id.to_owned(),
            started: Instant::now(),
            seen_first: false,
            usage: None,
            tools: super::tool_spans::ToolSpans::for_turn(agent),
        };
        // The previous turn's watch (and its open tool calls) ends outside the lock.
        let previous = self
            .turn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(watch);
        drop(previous);
    }

    /// The current turn's events are all in: its token usage, and its tool calls still open end
    /// now (marked unfinished).
    pub fn turn_ended(&self) -> TurnSummary {
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let Some(watch) = turn.as_mut() else {
            return TurnSummary::default();
        };
        TurnSummary {
            usage: watch.usage,
            // Later events of the command (none are expected) start no more spans.
            tools: watch
                .tools
                .take()
                .map(|mut tools| tools.finish(std::time::SystemTime::now()))
                .unwrap_or_default(),
        }
    }

    pub fn on_event(&self, event: &TurnEvent) {
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let Some(watch) = turn.as_mut().filter(|w| w.command_id == event.command_id) else {
            return;
        };
        if !watch.seen_first {
            watch.seen_first = true;
            self.metrics
                .first_event
                .get_or_create(&Runtime {
                    runtime: watch.runtime.clone(),
                })
                .observe(watch.started.elapsed().as_secs_f64());
        }
        if let Some(tools) = &mut watch.tools {
            tools.on_event(event);
        }
        if event.kind == "agent.usage" {
            let field = |name: &str| event.payload.get(name).and_then(|v| v.as_u64());
            let usage = watch.usage.get_or_insert_default();
            usage.input_tokens = usage
                .input_tokens
                .saturating_add(field("input_tokens").unwrap_or(0));
            usage.output_tokens = usage
                .output_tokens
                .saturating_add(field("output_tokens").unwrap_or(0));
            for (token_type, value) in [
                ("input", field("input_tokens")),
                ("output", field("output_tokens")),
                ("cached", field("cache_read_input_tokens")),
            ] {
                if let Some(value) = value {
                    self.metrics
                        .tokens
                        .get_or_create(&Tokens {
                            runtime: watch.runtime.clone(),
                            token_type: token_type.into(),
                        })
                        .inc_by(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(command: &str, kind: &str, payload: serde_json::Value) -> TurnEvent {
        TurnEvent {
            seq: 1,
            command_id: command.into(),
            kind: kind.into(),
            payload,
            attempt_id: None,
            emitted_at_ms: None,
            received_at_ms: None,
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn usage_events_count_tokens_by_runtime_and_the_first_event_is_timed_once_per_turn() {
        let metrics = Arc::new(RunnerMetrics::default());
        let tap = EventTap::new(metrics.clone());
        tap.on_event(&event("c0", "agent.message", serde_json::json!({})));
        tap.turn_started("codex@0.169", "c1", &tracing::Span::none());
        tap.on_event(&event(
            "c1",
            "output.stdout",
            serde_json::json!({"text": "x"}),
        ));
        let usage = serde_json::json!({
            "input_tokens": 1200, "output_tokens": 80, "cache_read_input_tokens": 1000
        });
        tap.on_event(&event("c1", "agent.usage", usage.clone()));
        tap.on_event(&event("c1", "agent.usage", usage));
        let text =
            metrics.render(&crate::runner::status::RunnerStatus::default().report(false, vec![]));
        let tokens = |t: &str| {
            value(
                &text,
                &format!(
                    "aac_runner_gen_ai_usage_tokens_total{{runtime=\"codex@0.169\",token_type=\"{t}\"}}"
                ),
            )
        };
        assert_eq!(tokens("input"), Some(2400.0), "{text}");
        assert_eq!(tokens("output"), Some(160.0));
        assert_eq!(tokens("cached"), Some(2000.0));
        assert_eq!(
            value(
                &text,
                "aac_runner_time_to_first_event_seconds_count{runtime=\"codex@0.169\"}"
            ),
            Some(1.0),
            "one turn, one first event (the event of another command is not counted): {text}"
        );
    }
}
