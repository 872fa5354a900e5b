//! Turn start latency (`cargo xtask bench`): from "a session needs a sandbox" to its first process
//! having run, side by side:
//!
//! * `warm`: a container from a warm pool, then `true` in it;
//! * `cold`: create + start a hardened container, then `true` in it;
//! * `docker-run`: `docker run --rm IMAGE true`, the baseline;
//! * `docker-exec`: `docker exec CONTAINER true` into an already running container: the floor any
//!   warm start pays for its first process (runc's exec), shown for scale.
//!
//! Container removal happens outside the timed part for warm and cold.
//!
//! And the next process of a running session (`process/*`): `true` from exec to exit status, with
//! its spare process ready and back to back, and 3 000 lines from a shell loop, all read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_host::local::{DEFAULT_IMAGE, sandbox_user};
use aac_host::sandbox::pool::{WarmPool, prepare_workspace};
use aac_host::sandbox::{
    ExecSpec, ProcessHandle, ProcessLimits, Sandbox, SandboxDriver, SandboxSpec,
};
use criterion::{Criterion, criterion_group, criterion_main};

async fn run_true(sandbox: &Arc<dyn Sandbox>) {
    run(sandbox, &["true"]).await;
}

/// Runs `argv` to its end, reading all its output.
async fn run(sandbox: &Arc<dyn Sandbox>, argv: &[&str]) {
    let spec = ExecSpec {
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        ..ExecSpec::default()
    };
    let raw = sandbox.exec(spec.clone()).await.unwrap();
    let mut process =
        ProcessHandle::start(raw, &spec, ProcessLimits::default(), Default::default());
    while process.read().await.is_some() {}
    assert_eq!(process.wait().await.code, Some(0));
}

/// The contention bench's healthy turn: 3 000 lines from a shell loop.
const LINES: &str = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done";

fn sandbox_start(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let driver: Arc<dyn SandboxDriver> = Arc::new(
        runtime
            .block_on(aac_tests::docker())
            .with_runner_id("bench-sandbox-start"),
    );
    let root = tempfile::tempdir().unwrap();
    let template = SandboxSpec::new(DEFAULT_IMAGE, root.path().join("cold"), sandbox_user());
    prepare_workspace(&template.workspace_host_dir, &template.user).unwrap();

    let mut group = c.benchmark_group("sandbox-start");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));

    let pool = runtime.block_on(async {
        let pool = WarmPool::start(
            driver.clone(),
            template.clone(),
            root.path().join("pool"),
            2,
        );
        pool.wait_full().await;
        pool
    });
    group.bench_function("warm", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    pool.wait_full().await;
                    let started = Instant::now();
                    let pooled = pool.acquire().await.unwrap();
                    run_true(&pooled.sandbox).await;
                    total += started.elapsed();
                    assert!(pooled.warm);
                    pooled.sandbox.remove().await.unwrap();
                }
                total
            })
        })
    });

    group.bench_function("cold", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let sandbox = driver.open(&template).await.unwrap();
                    run_true(&sandbox).await;
                    total += started.elapsed();
                    sandbox.remove().await.unwrap();
                }
                total
            })
        })
    });

    group.bench_function("docker-run", |b| {
        b.iter(|| {
            let status = std::process::Command::new("docker")
                .args(["run", "--rm", "--network", "none", DEFAULT_IMAGE, "true"])
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    let running = runtime.block_on(driver.open(&template)).unwrap();
    group.bench_function("docker-exec", |b| {
        b.iter(|| {
            let status = std::process::Command::new("docker")
                .args(["exec", running.id(), "true"])
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    group.finish();

    // The next process of a session: `true` through the host, from exec to its exit status, in a
    // running sandbox whose spare process is ready (a pause, not timed, before each), and back to
    // back (each one right after the last has ended: its shell may still be coming back).
    let mut group = c.benchmark_group("process");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for (name, pause, argv) in [
        ("ready-spare", Duration::from_millis(300), &["true"][..]),
        ("back-to-back", Duration::ZERO, &["true"][..]),
        (
            "3000-lines",
            Duration::from_millis(300),
            &["sh", "-c", LINES][..],
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        tokio::time::sleep(pause).await;
                        let started = Instant::now();
                        run(&running, argv).await;
                        total += started.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        running.remove().await.unwrap();
        pool.shutdown().await;
    });
}

criterion_group!(benches, sandbox_start);
criterion_main!(benches);
