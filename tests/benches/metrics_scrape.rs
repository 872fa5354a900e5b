//! The manager's `/metrics` work with 10 000 runs stored (`cargo bench -p aac-tests --bench
//! metrics_scrape`): the store's counts read by [`Store::run_stats`] (every run decoded once)
//! and the text exposition rendered, as behind `GET /metrics`. `AAC_BENCH_SCRAPE_RUNS` sets the
//! number of finished runs (default 10 000); 100 queued runs are added.

use std::sync::Arc;
use std::time::Duration;

use aac_host::manager::server::ManagerMetrics;
use aac_host::manager::{Store, SystemClock};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn scrape(c: &mut Criterion) {
    let stored: u64 = std::env::var("AAC_BENCH_SCRAPE_RUNS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("m.redb"), Arc::new(SystemClock)).unwrap();
    store.insert_finished_runs("done", "shell", stored).unwrap();
    for n in 0..100 {
        store
            .create_run(
                serde_json::from_value(
                    serde_json::json!({"id": format!("q-{n}"), "backend": "shell"}),
                )
                .unwrap(),
            )
            .unwrap();
    }
    let metrics = ManagerMetrics::default();
    metrics.observe_request("POST", "/v1/claim-next", 200, 0.002);
    let mut group = c.benchmark_group("metrics-scrape");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(BenchmarkId::from_parameter(stored + 100), |b| {
        b.iter(|| {
            let stats = store.run_stats().unwrap();
            let text = metrics.render(&stats, store.now_ms());
            assert!(text.contains("aac_manager_queue_depth 100"));
        })
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
