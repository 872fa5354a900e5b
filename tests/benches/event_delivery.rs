//! Event delivery (`cargo xtask bench`): 3000 events (a turn printing 3 000 lines) from a runner
//! to the embedded manager over loopback HTTP, side by side:
//!
//! * `batched`: the runner's default policy (up to 1000 events a request);
//! * `batched-100`: the default before 2026-11-29 (up to 100 events a request);
//! * `per-event`: one request per event, as the reference TypeScript runner does.
//!
//! Each request is one durable (fsync'd) store transaction, as in production.

use std::time::{Duration, Instant};

use aac_host::manager::protocol::RegisterRunner;
use aac_host::outcome::TurnEvent;
use aac_host::runner::BatchPolicy;
use aac_host::runner::events::EventShipper;
use aac_tests::runs::TestManager;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const EVENTS: u64 = 3000;

fn event_delivery(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let manager = runtime.block_on(TestManager::start());
    let client = manager.client();
    let mut group = c.benchmark_group("event-delivery");
    group
        .throughput(Throughput::Elements(EVENTS))
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, policy) in [
        ("batched", BatchPolicy::default()),
        (
            "batched-100",
            BatchPolicy {
                max_events: 100,
                ..BatchPolicy::default()
            },
        ),
        ("per-event", BatchPolicy::per_event()),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        // A fresh run each time: sequence numbers start at 1.
                        client
                            .register_runner(RegisterRunner {
                                id: Some("bench".into()),
                                ..Default::default()
                            })
                            .await
                            .unwrap();
                        let run = manager.shell_run(&[]).await;
                        let lease = client
                            .claim(&run.id, "bench", Duration::from_secs(60))
                            .await
                            .unwrap();
                        let start = Instant::now();
                        let (events, shipper) =
                            EventShipper::start(&client, run.id.clone(), lease.lease_token, policy);
                        for seq in 1..=EVENTS {
                            let _ = events.send(TurnEvent {
                                seq,
                                command_id: "c1".into(),
                                kind: "output.stdout".into(),
                                payload: serde_json::json!({ "text": format!("line {seq}") }),
                                attempt_id: None,
                                emitted_at_ms: None,
                                received_at_ms: None,
                            });
                        }
                        let stats = shipper.flush().await.unwrap();
                        total += start.elapsed();
                        assert_eq!(stats.sent, EVENTS);
                        drop(events);
                        shipper.finish().await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, event_delivery);
criterion_main!(benches);
