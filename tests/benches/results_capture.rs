//! Results leaving the runner (issue 14), each beside its baseline (`cargo xtask bench`):
//!
//! * `results/capture`: a 10 000-file workspace, 10 files changed: the runner's capture (record
//!   the tree in its shadow repository, list the changes, both git diffs, read the changed files)
//!   vs `results/git-diff`: `git add -A && git diff --cached --binary` of the same change in a
//!   repository of the same tree;
//! * `transfer/upload+materialize`: a 100 MB bundle uploaded to a manager on loopback, fetched by
//!   the runner's client with its hash checked, and materialized by the `bundle` plugin as it
//!   arrives (as the runner does), vs `transfer/tar-x`: `tar -xf` of the same archive.
//!
//! Directories live in `$AAC_BENCH_DIR` (default: the system's temporary directory).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aac_host::manager::ManagerClient;
use aac_host::manager::server::{Manager, ManagerConfig, start};
use aac_host::plugin::{BundleLimits, Integrity, MaterializeOptions, PluginHost, PluginHostConfig};
use aac_host::results::pack::pack_dir;
use aac_host::results::turn::RunResults;
use aac_tests::bundle::{Entry, many_files};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const FILES: usize = 10_000;
const CHANGED: usize = 10;

fn bench_root() -> tempfile::TempDir {
    match std::env::var_os("AAC_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn write_tree(dir: &Path, entries: &[Entry]) {
    for entry in entries {
        if let Entry::File(path, content) = entry {
            let full = dir.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
    }
}

/// Changes the first `CHANGED` files (a different content each round).
fn change(dir: &Path, entries: &[Entry], round: usize) {
    for entry in entries.iter().take(CHANGED) {
        if let Entry::File(path, content) = entry {
            let mut text = content.clone();
            text.extend_from_slice(format!("// round {round}\n").as_bytes());
            std::fs::write(dir.join(path), text).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@example.invalid"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
    out.stdout
}

fn capture(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = bench_root();
    let entries = many_files(FILES);
    let ours = root.path().join("ours");
    let theirs = root.path().join("theirs");
    write_tree(&ours, &entries);
    write_tree(&theirs, &entries);
    git(&theirs, &["init", "-q"]);
    git(&theirs, &["add", "-A"]);
    git(&theirs, &["commit", "-q", "-m", "base"]);
    let results = runtime
        .block_on(RunResults::start(
            root.path().join("results.git"),
            ours.clone(),
            u64::MAX,
        ))
        .unwrap();

    let mut group = c.benchmark_group("results");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));
    let mut round = 0;
    group.bench_function("capture", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                round += 1;
                change(&ours, &entries, round);
            },
            |()| async {
                let captured = results.capture().await.unwrap();
                assert_eq!(captured.result.modified as usize, CHANGED);
            },
            BatchSize::PerIteration,
        )
    });
    let mut round = 0;
    group.bench_function("git-diff", |b| {
        b.iter_batched(
            || {
                round += 1;
                change(&theirs, &entries, round);
            },
            |()| {
                git(&theirs, &["add", "-A"]);
                let diff = git(&theirs, &["diff", "--cached", "--binary"]);
                assert!(!diff.is_empty());
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn transfer(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = bench_root();
    // 100 files of 1 MiB, not compressible.
    let tree = root.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..100 {
        let content: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        std::fs::write(tree.join(format!("blob{i:03}.bin")), content).unwrap();
    }
    let packed = pack_dir(&tree).unwrap();
    eprintln!("bundle: {} bytes", packed.size);
    let manager = Manager::open(root.path().join("m.redb"), ManagerConfig::new("bench")).unwrap();
    let handle = runtime.block_on(start(manager.clone())).unwrap();
    let client = ManagerClient::new(handle.url(), "bench").unwrap();
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
        bundle_limits: BundleLimits::default(),
        ..Default::default()
    };

    // The bundle archive at `path`, as the runner hands it to the materializer.
    let archive = |path: &std::path::Path, size: u64| aac_host::plugin::materializer::Bundle {
        kind: "archive".into(),
        location: path.display().to_string(),
        sha256: Some(packed.sha256.clone()),
        size: Some(size),
    };
    let mut group = c.benchmark_group("transfer");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("upload+materialize", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                // Not stored yet: the upload is really sent.
                let _ = std::fs::remove_file(manager.store().blobs().path(&packed.sha256));
                tempfile::tempdir_in(root.path()).unwrap()
            },
            |dir| async {
                client
                    .put_blob_file(&packed.sha256, packed.file.path())
                    .await
                    .unwrap();
                // As the runner does: the materializer reads the archive as it arrives.
                let local = dir.path().join("bundle.tar");
                std::fs::File::create(&local).unwrap();
                let (writer, arrival) = aac_host::plugin::materializer::arrival();
                let downloading = {
                    let (client, local) = (client.clone(), local.clone());
                    let sha = packed.sha256.clone();
                    tokio::spawn(async move {
                        let size = {
                            let mut written = |bytes: u64| writer.written(bytes);
                            client
                                .get_blob_to_file_as_it_arrives(
                                    &sha,
                                    &local,
                                    u64::MAX,
                                    &mut written,
                                )
                                .await
                                .unwrap()
                        };
                        writer.complete(size, sha);
                    })
                };
                let options = MaterializeOptions {
                    arriving: Some(arrival),
                    ..options.clone()
                };
                plugin
                    .materialize(
                        &archive(&local, packed.size),
                        &dir.path().join("ws"),
                        &options,
                    )
                    .await
                    .unwrap();
                downloading.await.unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    // The chain's three parts apart, to see where it goes.
    group.bench_function("upload", |b| {
        b.to_async(&runtime).iter(|| async {
            let _ = std::fs::remove_file(manager.store().blobs().path(&packed.sha256));
            client
                .put_blob_file(&packed.sha256, packed.file.path())
                .await
                .unwrap();
        })
    });
    group.bench_function("download", |b| {
        b.to_async(&runtime).iter_batched(
            || tempfile::tempdir_in(root.path()).unwrap(),
            |dir| async {
                let local = dir.path().join("bundle.tar");
                client
                    .get_blob_to_file(&packed.sha256, &local, u64::MAX)
                    .await
                    .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("materialize", |b| {
        b.to_async(&runtime).iter_batched(
            || tempfile::tempdir_in(root.path()).unwrap(),
            |dir| async {
                let bundle = archive(packed.file.path(), packed.size);
                plugin
                    .materialize(&bundle, &dir.path().join("ws"), &options)
                    .await
                    .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("tar-x", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(root.path()).unwrap(),
            |dir| {
                let status = Command::new("tar")
                    .arg("-xf")
                    .arg(packed.file.path())
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
    drop(handle);
}

criterion_group!(benches, capture, transfer);
criterion_main!(benches);
