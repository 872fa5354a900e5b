//! A damaged store file, through the real `aac-host manager`: truncated (to 4 KiB, to half, by one
//! byte), a damaged header, or empty. The manager never panics and never starts an empty store in
//! its place: it exits 2 naming the file and what to do, and leaves the file exactly as it was.
//! `--repair` recovers what redb can, keeping the damaged file beside the repaired one.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use aac_host::manager::protocol::CreateRun;
use aac_host::manager::{Store, SystemClock};

/// A clean store with three runs, closed; its bytes.
fn healthy_store(path: &Path) -> Vec<u8> {
    let store = Store::open(path, Arc::new(SystemClock)).unwrap();
    for i in 0..3 {
        let req: CreateRun = serde_json::from_value(
            serde_json::json!({"id": format!("run-{i}"), "backend": "shell"}),
        )
        .unwrap();
        store.create_run(req).unwrap();
    }
    drop(store);
    std::fs::read(path).unwrap()
}

/// Runs `aac-host manager --db DB ARGS` and waits for it to exit by itself.
async fn manager(db: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["manager", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .env("AAC_MANAGER_TOKEN", "store-file-token")
        .kill_on_drop(true)
        .output();
    // A guard against a manager that wrongly starts serving; not a speed assertion.
    tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the manager did not exit: it opened the damaged store")
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn damaged_copies(dir: &Path, good: &[u8]) -> Vec<(&'static str, PathBuf, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("truncated to 4 KiB", good[..4096].to_vec()),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
    ];
    let mut magic = good.to_vec();
    magic[..4].copy_from_slice(b"XXXX");
    cases.push(("magic number overwritten", magic));
    let mut page_size = good.to_vec();
    page_size[12..16].copy_from_slice(&7u32.to_le_bytes());
    cases.push(("page size damaged", page_size));
    let mut regions = good.to_vec();
    regions[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("region count damaged", regions));
    let mut zero_regions = good.to_vec();
    zero_regions[20..32].fill(0);
    cases.push(("region layout zeroed", zero_regions));
    cases
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(format!("{}.redb", name.replace(' ', "-")));
            std::fs::write(&path, &bytes).unwrap();
            (name, path, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_damaged_store_is_a_clear_error_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let good = healthy_store(&dir.path().join("good.redb"));
    for (name, path, bytes) in damaged_copies(dir.path(), &good) {
        let out = manager(&path, &[]).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        assert!(err.contains("damaged"), "{name}: {err}");
        assert!(err.contains("backup"), "{name}: {err}");
        assert!(err.contains("--repair"), "{name}: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: the file changed"
        );
    }
}

#[tokio::test]
async fn an_empty_file_is_not_started_as_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, b"").unwrap();
    let out = manager(&path, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("empty (0 bytes)"), "{err}");
    assert!(err.contains("backup"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    let out = manager(&path, &["--repair"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be repaired"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn repair_recovers_a_file_one_byte_short_and_keeps_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = healthy_store(&dir.path().join("good.redb"));
    let path = dir.path().join("short.redb");
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();

    let out = manager(&path, &["--repair"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("3 runs"), "{err}");
    let kept: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("short.redb.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), &good[..good.len() - 1]);

    let store = Store::open(&path, Arc::new(SystemClock)).unwrap();
    let ids: Vec<String> = store
        .list_runs(None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["run-0", "run-1", "run-2"]);
}

#[tokio::test]
async fn repair_refuses_what_redb_cannot_recover_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = healthy_store(&dir.path().join("good.redb"));
    for (name, bytes) in [
        ("4k", good[..4096].to_vec()),
        ("magic", {
            let mut b = good.clone();
            b[..4].copy_from_slice(b"XXXX");
            b
        }),
    ] {
        let path = dir.path().join(format!("{name}.redb"));
        std::fs::write(&path, &bytes).unwrap();
        let out = manager(&path, &["--repair"]).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("cannot be repaired"), "{name}: {err}");
        assert!(err.contains("backup"), "{name}: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: the file changed"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".repairing") || n.contains(".damaged-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
