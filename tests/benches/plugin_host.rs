//! Plugin host benchmarks (`cargo xtask bench`), each side by side with its baseline:
//!
//! * `load/compile` (cold: no cache) vs `load/cached` (artifact from the cache);
//! * `session/wasm` (instantiate a Store, `start`, `close`) vs `session/native-subprocess`
//!   (spawn a minimal native adapter process and complete one request/response handshake).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aac_host::plugin::{PluginHost, PluginHostConfig};
use criterion::{Criterion, criterion_group, criterion_main};

fn host(cache: Option<&std::path::Path>) -> Arc<PluginHost> {
    PluginHost::new(PluginHostConfig {
        cache_dir: cache.map(|p| p.to_path_buf()),
        ..PluginHostConfig::default()
    })
    .unwrap()
}

fn load(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shell = aac_tests::plugin("shell");
    let cache = tempfile::tempdir().unwrap();
    let cold = host(None);
    let cached = host(Some(cache.path()));
    runtime.block_on(cached.load_backend(&shell)).unwrap();

    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("compile", |b| {
        b.to_async(&runtime)
            .iter(|| async { cold.load_backend(&shell).await.unwrap() })
    });
    group.bench_function("cached", |b| {
        b.to_async(&runtime)
            .iter(|| async { cached.load_backend(&shell).await.unwrap() })
    });
    group.finish();
}

fn session(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = host(Some(cache.path()));
    let shell = runtime
        .block_on(host.load_backend(&aac_tests::plugin("shell")))
        .unwrap();

    let mut group = c.benchmark_group("session");
    group.bench_function("wasm", |b| {
        b.to_async(&runtime).iter(|| async {
            let session = shell
                .open_session(aac_tests::sandboxless_session("bench"))
                .await
                .unwrap();
            session.close().await;
        })
    });
    group.bench_function("native-subprocess", |b| {
        b.iter(|| {
            // The smallest possible native adapter: a process that answers one request line.
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"{\"start\":\"bench\"}\n").unwrap();
            let mut reply = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut reply)
                .unwrap();
            drop(stdin);
            child.wait().unwrap();
            reply
        })
    });
    group.finish();
}

criterion_group!(benches, load, session);
criterion_main!(benches);
