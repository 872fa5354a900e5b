//! The queue index and removing runs: claim-next takes the oldest claimable run through the
//! index (queued runs, and runs whose lease expired); `DELETE /v1/runs/{id}` removes a finished
//! run and refuses one that has not ended; the retention sweep removes finished runs past the
//! retention with their events, at most a budget of rows per sweep. A real redb file; time from a
//! manual clock, except through the real binary.

use std::sync::Arc;
use std::time::Duration;

use aac_host::manager::protocol::{AppendEvents, RunStatus};
use aac_host::manager::{ManualClock, Store};
use aac_host::outcome::TurnEvent;
use serde_json::json;

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn store(dir: &tempfile::TempDir, clock: &ManualClock) -> Store {
    let store = Store::open(dir.path().join("m.redb"), Arc::new(clock.clone())).unwrap();
    store.register_runner(from(json!({"id": "rnr"}))).unwrap();
    store
}

fn create(store: &Store, id: &str, backend: &str) {
    store
        .create_run(from(json!({"id": id, "backend": backend})))
        .unwrap();
}

fn claim_next(store: &Store, backends: Option<&[&str]>) -> Option<(String, String)> {
    store
        .claim_next(from(
            json!({"runner_id": "rnr", "lease_seconds": 10, "backends": backends}),
        ))
        .unwrap()
        .map(|l| (l.run.id, l.lease_token))
}

/// Claims `id`, stores `events` events and finishes it `completed`.
fn finish(store: &Store, id: &str, events: u64) {
    let lease = store
        .claim(id, from(json!({"runner_id": "rnr", "lease_seconds": 10})))
        .unwrap();
    let events = AppendEvents {
        events: (1..=events)
            .map(|seq| TurnEvent {
                seq,
                command_id: "c".into(),
                kind: "output".into(),
                payload: json!({"seq": seq}),
                attempt_id: None,
                emitted_at_ms: None,
                received_at_ms: None,
            })
            .collect(),
        dropped: 0,
    };
    store.append_events(id, &lease.lease_token, events).unwrap();
    store
        .enqueue(id, from(json!({"id": "c", "prompt": "p"})))
        .unwrap();
    store
        .set_run_status(id, &lease.lease_token, from(json!({"status": "completed"})))
        .unwrap();
}

#[test]
fn claim_next_takes_the_oldest_claimable_run_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let store = store(&dir, &clock);
    for (i, backend) in ["shell", "codex@0.169", "shell", "codex@0.169"]
        .iter()
        .enumerate()
    {
        create(&store, &format!("run-{i}"), backend);
        clock.advance(Duration::from_millis(1));
    }
    finish(&store, "run-0", 3);
    let first = claim_next(&store, Some(&["codex@0.169"])).unwrap();
    assert_eq!(first.0, "run-1");
    assert_eq!(claim_next(&store, None).unwrap().0, "run-2");
    assert_eq!(
        claim_next(&store, Some(&["shell"])),
        None,
        "run-0 finished, run-2 leased"
    );

    // run-1's lease expires: it is claimable again, and older than run-3.
    clock.advance(Duration::from_secs(11));
    let again = claim_next(&store, Some(&["codex@0.169", "nothing"])).unwrap();
    assert_eq!(again.0, "run-1");
    assert_ne!(again.1, first.1, "a new lease");
    // run-2's lease expired too; it is older than run-3.
    assert_eq!(claim_next(&store, None).unwrap().0, "run-2");
    assert_eq!(claim_next(&store, None).unwrap().0, "run-3");
    assert_eq!(claim_next(&store, None), None);

    // Cancelled while queued: gone from the queue.
    create(&store, "run-4", "shell");
    store.cancel_run("run-4").unwrap();
    assert_eq!(claim_next(&store, None), None);

    // The index survives a restart.
    drop(store);
    let store = Store::open(dir.path().join("m.redb"), Arc::new(clock.clone())).unwrap();
    create(&store, "run-5", "shell");
    clock.advance(Duration::from_secs(11));
    let order: Vec<String> = std::iter::from_fn(|| claim_next(&store, None).map(|c| c.0)).collect();
    assert_eq!(order, ["run-1", "run-2", "run-3", "run-5"]);

    let too_many: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    let err = store
        .claim_next(from(json!({"runner_id": "rnr", "backends": too_many})))
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 400, "{err}");
}

#[test]
fn only_a_finished_run_is_deleted_and_its_rows_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let store = store(&dir, &clock);
    create(&store, "queued", "shell");
    create(&store, "leased", "shell");
    create(&store, "done", "shell");
    let lease = store
        .claim(
            "leased",
            from(json!({"runner_id": "rnr", "lease_seconds": 10})),
        )
        .unwrap();
    finish(&store, "done", 50);

    let err = store.delete_run("queued").unwrap_err();
    assert_eq!(err.status().as_u16(), 409);
    assert_eq!(err.code(), "run-not-finished");
    let err = store.delete_run("leased").unwrap_err();
    assert_eq!(err.code(), "run-not-finished");
    assert!(err.to_string().contains("leased by runner rnr"), "{err}");
    assert!(err.to_string().contains("cancel it"), "{err}");
    assert_eq!(
        store.delete_run("missing").unwrap_err().status().as_u16(),
        404
    );

    store.delete_run("done").unwrap();
    assert_eq!(store.get_run("done").unwrap_err().status().as_u16(), 404);
    assert_eq!(store.delete_run("done").unwrap_err().status().as_u16(), 404);
    // Its rows are gone: the same id starts empty.
    create(&store, "done", "shell");
    let (events, run) = store.events_after("done", 0, 100).unwrap();
    assert!(events.is_empty());
    assert_eq!((run.status, run.last_command_seq), (RunStatus::Queued, 0));
    assert!(store.get_command("done", "c").is_err());

    // The leased run is untouched and still works.
    store
        .heartbeat("leased", &lease.lease_token, from(json!({})))
        .unwrap();
}

#[test]
fn the_retention_sweep_removes_old_finished_runs_a_bounded_batch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let store = store(&dir, &clock);
    let day = Duration::from_secs(24 * 3600);
    for i in 0..5 {
        create(&store, &format!("old-{i}"), "shell");
        finish(&store, &format!("old-{i}"), 100);
    }
    create(&store, "old-active", "shell");
    clock.advance(day * 31);
    create(&store, "recent", "shell");
    finish(&store, "recent", 10);
    let retention = Some(day * 30);

    // Each sweep removes at most 120 rows: five runs of 100 events, a command and a command id.
    let mut sweeps = 0;
    let mut expired = Vec::new();
    loop {
        let report = store.sweep(retention, 120).unwrap();
        assert!(report.rows_removed <= 120, "{report:?}");
        expired.extend(report.expired_runs);
        sweeps += 1;
        if !report.more {
            break;
        }
        assert!(sweeps < 20, "the sweep does not finish");
    }
    assert!(
        sweeps >= 5,
        "5 × 103 rows cannot go in fewer than 5 sweeps of 120: {sweeps}"
    );
    expired.sort();
    assert_eq!(expired, ["old-0", "old-1", "old-2", "old-3", "old-4"]);
    for i in 0..5 {
        assert_eq!(
            store
                .get_run(&format!("old-{i}"))
                .unwrap_err()
                .status()
                .as_u16(),
            404
        );
    }
    // Unfinished runs are kept whatever their age; recent finished runs too.
    assert_eq!(
        store.get_run("old-active").unwrap().status,
        RunStatus::Queued
    );
    assert_eq!(store.events_after("recent", 0, 100).unwrap().0.len(), 10);
    // Nothing left to do: a sweep writes nothing.
    assert_eq!(store.sweep(retention, 120).unwrap(), Default::default());
    // Without a retention nothing is removed.
    clock.advance(day * 365);
    assert!(store.sweep(None, 120).unwrap().expired_runs.is_empty());
    assert!(store.get_run("recent").is_ok());
}

#[test]
fn an_id_still_being_deleted_cannot_be_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let store = store(&dir, &clock);
    create(&store, "big", "shell");
    // More events than one sweep removes: the delete leaves the rest to the sweep.
    finish(
        &store,
        "big",
        aac_host::manager::store::SWEEP_ROWS as u64 + 500,
    );
    store.delete_run("big").unwrap();
    let err = store
        .create_run(from(json!({"id": "big", "backend": "shell"})))
        .unwrap_err();
    assert_eq!(err.code(), "id-conflict");
    assert!(err.to_string().contains("being removed"), "{err}");
    let report = store
        .sweep(None, aac_host::manager::store::SWEEP_ROWS)
        .unwrap();
    assert!(!report.more, "{report:?}");
    create(&store, "big", "shell");
    assert!(store.events_after("big", 0, 10).unwrap().0.is_empty());
}

async fn cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(args)
        .env("AAC_MANAGER_TOKEN", "retention-token")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_standalone_manager_deletes_finished_runs_and_expires_old_ones() {
    use aac_host::manager::ManagerClient;

    for bad in ["0s", "soon"] {
        let out = cli(&["manager", "--retention", bad]).await;
        assert_eq!(out.status.code(), Some(2), "--retention {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--retention"));
    }

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut manager = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args([
            "manager",
            "--retention",
            "2s",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
        ])
        .arg(dir.path().join("m.redb"))
        .env("AAC_MANAGER_TOKEN", "retention-token")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = ManagerClient::new(&url, "retention-token").unwrap();
    aac_tests::wait::manager_answers(&client).await;
    let runner = client
        .register_runner(from(json!({"id": "rnr"})))
        .await
        .unwrap();
    for id in ["kept", "deleted", "expired"] {
        client
            .create_run(from(json!({"id": id, "backend": "shell"})))
            .await
            .unwrap();
    }
    for id in ["deleted", "expired"] {
        let lease = client
            .claim(id, &runner.id, Duration::from_secs(30))
            .await
            .unwrap();
        client
            .run_status(
                id,
                &lease.lease_token,
                &from(json!({"status": "completed"})),
            )
            .await
            .unwrap();
    }

    let out = cli(&["runs", "--manager-url", &url, "delete", "kept"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("only a finished run can be deleted"), "{err}");

    let out = cli(&["runs", "--manager-url", &url, "delete", "deleted"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply, json!({"id": "deleted", "deleted": true}));
    assert_eq!(
        client.get_run("deleted").await.unwrap_err().status(),
        Some(404)
    );

    // The sweep removes the other finished run once it is 2 s old; a hang guard, not a timing.
    aac_tests::wait::until(
        "the retention sweep to remove the finished run",
        Duration::from_secs(60),
        || async {
            client
                .get_run("expired")
                .await
                .is_err_and(|e| e.status() == Some(404))
        },
    )
    .await;
    assert_eq!(
        client.get_run("kept").await.unwrap().status,
        RunStatus::Queued
    );
    manager.start_kill().unwrap();
    manager.wait().await.unwrap();
}
