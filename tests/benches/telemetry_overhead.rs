//! Telemetry overhead (issue 15, `cargo bench -p aac-tests --bench telemetry_overhead`): a
//! 1 000-event turn and claim-next, each under three `tracing` subscribers side by side:
//!
//! * `baseline`: no subscriber at all;
//! * `off`: the host's log subscriber at its default filter (`warn,plugin=info,access=info,…`,
//!   lines to a sink): what every process carries when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset;
//! * `on`: the same plus the OpenTelemetry layer, batching spans to a collector stand-in on
//!   loopback (OTLP/HTTP protobuf).
//!
//! The turn: a runner of the shell plugin on host processes (no Docker, so the sandbox's noise
//! does not hide the host's) claims a run by id and runs one command printing 1 000 lines (1 000
//! `output.stdout` events) through the embedded manager, until the run's status is reported.
//! Claim-next: one `POST /v1/claim-next` over loopback HTTP (run created untimed), with its
//! access-log line and request metrics. Everything runs on one current-thread runtime so the
//! subscriber under test sees every span and event.
//!
//! `metrics-tap`: the runner metrics' own work on a 1 000-event turn (first-event timing, token
//! counters), which no subscriber switches off: compare it with the turn's time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_host::manager::protocol::RegisterRunner;
use aac_host::outcome::{TerminalStatus, TurnEvent};
use aac_host::runner::metrics::{EventTap, RunnerMetrics};
use aac_host::telemetry::Telemetry;
use aac_tests::host_driver::HostProcessDriver;
use aac_tests::otlp_collector::Collector;
use aac_tests::runs::{TestManager, runner_config, shell_runner_on};
use aac_tests::test_host;
use criterion::{Criterion, criterion_group, criterion_main};
use tracing::Dispatch;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

const EVENTS: usize = 1000;
/// The host's default log filter (`aac_host::cli` keeps its own copy private).
const HOST_FILTER: &str = "warn,plugin=info,access=info,manager=info";

fn host_log_layer() -> aac_host::telemetry::BoxedLayer {
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::sink)
        .with_filter(tracing_subscriber::EnvFilter::new(HOST_FILTER))
        .boxed()
}

/// The three subscribers; `on` exports to `collector`. The exporter is kept to be shut down.
fn variants(collector: &str) -> Vec<(&'static str, Dispatch, Option<Telemetry>)> {
    let (telemetry, traces) = Telemetry::to_endpoint(collector).expect("exporter");
    vec![
        ("baseline", Dispatch::none(), None),
        (
            "off",
            Dispatch::new(tracing_subscriber::registry().with(vec![host_log_layer()])),
            None,
        ),
        (
            "on",
            Dispatch::new(tracing_subscriber::registry().with(vec![host_log_layer(), traces])),
            Some(telemetry),
        ),
    ]
}

fn telemetry_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manager = runtime.block_on(TestManager::start());
    let (collector, endpoint) = runtime.block_on(Collector::start());
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let runner = runtime.block_on(shell_runner_on(
        client.clone(),
        &host,
        runner_config("bench-otel", root.path()),
        Arc::new(HostProcessDriver::new()),
    ));
    let print = format!("i=0; while [ $i -lt {EVENTS} ]; do echo line $i; i=$((i+1)); done");
    let variants = variants(&endpoint);

    let mut group = c.benchmark_group("telemetry/turn-1000-events");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    for (name, dispatch, _) in &variants {
        group.bench_function(*name, |b| {
            b.iter_custom(|iterations| {
                tracing::dispatcher::with_default(dispatch, || {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            let run = manager.shell_run(&[print.as_str()]).await;
                            let start = Instant::now();
                            let report = runner.run(&run.id).await.unwrap();
                            total += start.elapsed();
                            assert_eq!(report.status(), TerminalStatus::Completed);
                            assert!(report.events.sent >= EVENTS as u64, "{:?}", report.events);
                        }
                        total
                    })
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("telemetry/claim-next");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(15));
    runtime
        .block_on(client.register_runner(RegisterRunner {
            id: Some("bench-claim".into()),
            ..Default::default()
        }))
        .unwrap();
    let backends = Some(vec!["claim-bench".to_owned()]);
    for (name, dispatch, _) in &variants {
        group.bench_function(*name, |b| {
            b.iter_custom(|iterations| {
                tracing::dispatcher::with_default(dispatch, || {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            aac_tests::runs::queued_run(&client, "claim-bench", &[]).await;
                            let start = Instant::now();
                            let lease = client
                                .claim_next(
                                    "bench-claim",
                                    Duration::from_secs(3600),
                                    backends.clone(),
                                )
                                .await
                                .unwrap();
                            total += start.elapsed();
                            assert!(lease.is_some());
                        }
                        total
                    })
                })
            })
        });
    }
    group.finish();
    claim_next_interleaved(&runtime, &client, &variants, &backends);

    let mut group = c.benchmark_group("telemetry/metrics-tap");
    let tap = EventTap::new(Arc::new(RunnerMetrics::default()));
    let events: Vec<TurnEvent> = (1..=EVENTS as u64)
        .map(|seq| TurnEvent {
            seq,
            command_id: "c1".into(),
            kind: if seq % 100 == 0 { "agent.usage" } else { "output.stdout" }.into(),
            payload: serde_json::json!({ "text": format!("line {seq}"), "input_tokens": 10, "output_tokens": 5 }),
            attempt_id: None,
            emitted_at_ms: None,
            received_at_ms: None,
        })
        .collect();
    group.bench_function("1000-events", |b| {
        b.iter(|| {
            tap.turn_started("shell@1", "c1", &tracing::Span::none());
            for event in &events {
                tap.on_event(event);
            }
        })
    });
    group.finish();

    for (_, _, telemetry) in variants {
        if let Some(telemetry) = telemetry {
            telemetry.shutdown();
        }
    }
    let spans = collector.spans().len();
    eprintln!("the collector stand-in received {spans} spans");
}

/// Claim-next's time is mostly the manager's commit (an fsync, on a blocking thread), which drifts
/// with the disk and the store's size while criterion measures one variant after the other. This
/// takes the three side by side instead: every round times one claim under each variant, in a
/// rotating order, and compares medians — of wall-clock time, and of the CPU time of the runtime's
/// thread, where the client, the server and every subscriber's work run (the fsync does not).
fn claim_next_interleaved(
    runtime: &tokio::runtime::Runtime,
    client: &aac_host::manager::ManagerClient,
    variants: &[(&'static str, Dispatch, Option<Telemetry>)],
    backends: &Option<Vec<String>>,
) {
    const ROUNDS: usize = 600;
    let mut wall: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); variants.len()];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for round in 0..ROUNDS {
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            runtime.block_on(aac_tests::runs::queued_run(client, "claim-bench", &[]));
            // The whole runtime (client and manager alike) under the variant's subscriber.
            let (lease, took, used) = tracing::dispatcher::with_default(&variants[v].1, || {
                runtime.block_on(async {
                    let (start, start_cpu) = (Instant::now(), thread_cpu());
                    let lease = client
                        .claim_next("bench-claim", Duration::from_secs(3600), backends.clone())
                        .await
                        .unwrap();
                    (lease, start.elapsed(), thread_cpu() - start_cpu)
                })
            });
            wall[v].push(took);
            cpu[v].push(used);
            assert!(lease.is_some());
        }
    }
    let report = |what: &str, times: &mut [Vec<Duration>]| {
        let medians: Vec<f64> = times
            .iter_mut()
            .map(|t| {
                t.sort();
                t[t.len() / 2].as_secs_f64() * 1e6
            })
            .collect();
        let line: Vec<String> = variants
            .iter()
            .zip(&medians)
            .map(|((name, _, _), median)| {
                format!(
                    "{name} {median:.0} µs ({:+.1} %)",
                    (median / medians[0] - 1.0) * 100.0
                )
            })
            .collect();
        println!(
            "telemetry/claim-next interleaved, {what}, medians of {ROUNDS}: {}",
            line.join(", ")
        );
    };
    report("wall-clock", &mut wall);
    report("CPU of the runtime's thread", &mut cpu);
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

criterion_group!(benches, telemetry_overhead);
criterion_main!(benches);
