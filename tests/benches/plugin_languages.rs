//! The same shell-like backend in Rust (`plugins/shell`), JavaScript (`examples/js-shell`, jco)
//! and Python (`examples/python-shell`, componentize-py), side by side (`cargo xtask bench --
//! plugin_languages`; docs/benchmarks.md, "Plugins per language"):
//!
//! * `languages/compile/LANG`: cold load, the component compiled with no cache;
//! * `languages/cached/LANG`: load with the compiled artifact from the cache;
//! * `languages/session-start/LANG`: instantiate, `start`, `close`;
//! * `languages/turn-1000-events/LANG`: one turn of `seq 1000` on a host process (no Docker):
//!   1 000 `output.stdout` events and `process.exited`, every event received.
//!
//! Component sizes are printed first. A language whose component is missing (node or python3 not
//! installed when `cargo xtask bench` built the examples) is skipped, saying so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{PluginHost, PluginHostConfig};
use aac_host::sandbox::{SandboxDriver, SandboxSpec};
use aac_tests::host_driver::HostProcessDriver;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// (language, component) for each backend that is built.
fn components() -> Vec<(&'static str, PathBuf)> {
    let dir = std::env::var_os("AAC_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins"))
        });
    let mut found = vec![("rust", aac_tests::plugin("shell"))];
    for (lang, file) in [("js", "js-shell.wasm"), ("python", "python-shell.wasm")] {
        let path = dir.join(file);
        if path.is_file() {
            found.push((lang, path));
        } else {
            eprintln!(
                "SKIPPED {lang}: {} is missing (cargo xtask plugins --polyglot)",
                path.display()
            );
        }
    }
    for (lang, path) in &found {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "component size {lang}: {bytes} bytes ({:.1} MiB)",
            bytes as f64 / 1048576.0
        );
    }
    found
}

/// The compile cache tests/tests/polyglot_plugins.rs fills too: a bench filtered to the cached
/// loads, sessions and turns does not compile the large components first.
fn shared_cache() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/polyglot/compiled"
    ))
}

fn host(cache: Option<&std::path::Path>) -> Arc<PluginHost> {
    PluginHost::new(PluginHostConfig {
        cache_dir: cache.map(|p| p.to_path_buf()),
        ..PluginHostConfig::default()
    })
    .unwrap()
}

fn loading(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cold = host(None);
    let cached = host(Some(&shared_cache()));
    let mut group = c.benchmark_group("languages");
    // A JavaScript or Python component compiles in seconds: ten samples are enough.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    for (lang, path) in components() {
        runtime.block_on(cached.load_backend(&path)).unwrap();
        group.bench_function(format!("compile/{lang}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { cold.load_backend(&path).await.unwrap() })
        });
        group.bench_function(format!("cached/{lang}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { cached.load_backend(&path).await.unwrap() })
        });
    }
    group.finish();
}

fn sessions(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = host(Some(&shared_cache()));
    let workspace = tempfile::tempdir().unwrap();
    let driver = HostProcessDriver::new();
    let spec = SandboxSpec::new("none", workspace.path().to_path_buf(), "1000:1000".into());
    let sandbox = runtime.block_on(driver.open(&spec)).unwrap();

    let mut group = c.benchmark_group("languages");
    group.sample_size(20);
    for (lang, path) in components() {
        let plugin = runtime.block_on(host.load_backend(&path)).unwrap();
        group.bench_function(format!("session-start/{lang}"), |b| {
            b.to_async(&runtime).iter(|| async {
                let session = plugin
                    .open_session(aac_tests::sandboxless_session("bench"))
                    .await
                    .ok()
                    .unwrap();
                session.close().await;
            })
        });

        let (tx, mut events) = mpsc::unbounded_channel();
        let mut options = aac_tests::sandboxless_session("bench-turn");
        options.sandbox = Some(sandbox.clone());
        options.events = tx;
        let mut session = runtime.block_on(plugin.open_session(options)).ok().unwrap();
        let command = CommandInfo {
            command_id: "c1".into(),
            sequence: 1,
            prompt: "seq 1000".into(),
            payload_json: "{}".into(),
        };
        group.bench_function(format!("turn-1000-events/{lang}"), |b| {
            b.iter(|| {
                runtime.block_on(session.run_turn(command.clone(), CancellationToken::new()));
                let mut received = 0;
                while events.try_recv().is_ok() {
                    received += 1;
                }
                assert_eq!(received, 1001, "{lang}: every event of the turn");
            })
        });
        runtime.block_on(session.close());
    }
    group.finish();
    runtime.block_on(sandbox.remove()).unwrap();
}

criterion_group!(benches, loading, sessions);
criterion_main!(benches);
