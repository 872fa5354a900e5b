//! Materializing a 10 000-file bundle (`cargo xtask bench`), side by side:
//!
//! * `bundle/component`: the `bundle` plugin reads the archive through the host (which hashes it
//!   as it serves it: the reference pins the archive's sha256, so the plugin does not hash each
//!   file again), checks every path and size against the manifest, and writes through its one
//!   preopened directory; the host then verifies what was written and moves it into the workspace;
//! * `bundle/tar-x`: baseline, `tar -xf` of the same archive (no hash checks at all).
//!
//! Each iteration writes into a fresh directory; removing it is outside the timed part. The
//! directories live in `$AAC_BENCH_DIR` (default: the system's temporary directory): on a busy
//! disk both sides wait on I/O alike, on a tmpfs (`AAC_BENCH_DIR=/dev/shm`) the CPU cost shows.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aac_host::plugin::{Integrity, MaterializeOptions, PluginHost, PluginHostConfig};
use aac_tests::bundle::{archive, manifest_for, many_files, save};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const FILES: usize = 10_000;

fn fresh(root: &Path) -> tempfile::TempDir {
    tempfile::tempdir_in(root).unwrap()
}

fn materialize(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = match std::env::var_os("AAC_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let entries = many_files(FILES);
    let bytes = archive(&manifest_for(&entries), &entries);
    let bundle = aac_host::runner::session::plugin_bundle(&save(root.path(), "bundle.tar", &bytes));
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(PluginHostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..PluginHostConfig::default()
    })
    .unwrap();
    let plugin = runtime
        .block_on(host.load_materializer(&aac_tests::plugin("bundle"), &Integrity::default()))
        .unwrap();
    let options = MaterializeOptions {
        cpu: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    eprintln!("bundle: {FILES} files, archive of {} bytes", bytes.len());

    let mut group = c.benchmark_group("bundle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("component", |b| {
        b.to_async(&runtime).iter_batched(
            || fresh(root.path()),
            |dir| async {
                let summary = plugin
                    .materialize(&bundle, &dir.path().join("ws"), &options)
                    .await
                    .unwrap();
                assert_eq!(summary.files as usize, FILES + 100 + 1);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("tar-x", |b| {
        b.iter_batched(
            || fresh(root.path()),
            |dir| {
                let status = Command::new("tar")
                    .arg("-xf")
                    .arg(&bundle.location)
                    .arg("-C")
                    .arg(dir.path())
                    .status()
                    .unwrap();
                assert!(status.success());
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, materialize);
criterion_main!(benches);
