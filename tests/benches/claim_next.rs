//! Claim-next against a store holding 1 000, 100 000 and 1 000 000 finished runs
//! (`cargo bench -p aac-tests --bench claim_next`): the queue index makes a claim cost the same
//! whatever the number of runs stored (goal: flat within 2×).
//!
//! `scan-baseline` reads every stored run once, the work claim-next did before the index.
//!
//! Each iteration creates one queued run (not timed) and claims it (timed): one durable (fsync'd)
//! write transaction through [`Store::claim_next`], as behind `POST /v1/claim-next`. The store is
//! filled with [`Store::insert_finished_runs`], which stores and indexes runs like the API does,
//! 10 000 to a transaction. `AAC_BENCH_CLAIM_SIZES=1000,100000` picks the sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_host::manager::{Store, SystemClock};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn sizes() -> Vec<u64> {
    std::env::var("AAC_BENCH_CLAIM_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000])
}

/// A protocol request from its JSON.
macro_rules! from {
    ($($json:tt)+) => {
        serde_json::from_value(serde_json::json!($($json)+)).unwrap()
    };
}

fn claim_next(c: &mut Criterion) {
    let mut group = c.benchmark_group("claim-next");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for stored in sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("m.redb"), Arc::new(SystemClock)).unwrap();
        let filling = Instant::now();
        store.insert_finished_runs("done", "shell", stored).unwrap();
        eprintln!("filled {stored} finished runs in {:?}", filling.elapsed());
        store.register_runner(from!({"id": "bench"})).unwrap();
        let mut n = 0u64;
        group.bench_function(BenchmarkId::from_parameter(stored), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    n += 1;
                    store
                        .create_run(from!({"id": format!("q-{n}"), "backend": "shell"}))
                        .unwrap();
                    let start = Instant::now();
                    let lease = store
                        .claim_next(from!({"runner_id": "bench", "lease_seconds": 3600, "backends": ["shell"]}))
                        .unwrap();
                    total += start.elapsed();
                    assert_eq!(lease.unwrap().run.id, format!("q-{n}"));
                }
                total
            })
        });
        // Baseline: one pass over every stored run, as claim-next made before the index (there
        // inside the write transaction, before the fsync).
        group.bench_function(BenchmarkId::new("scan-baseline", stored), |b| {
            b.iter(|| {
                let queued = store
                    .list_runs(Some(aac_host::manager::protocol::RunStatus::Queued), 1)
                    .unwrap();
                assert!(queued.is_empty());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, claim_next);
criterion_main!(benches);
