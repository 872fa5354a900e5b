//! The manager's blob store over real HTTP: content-addressed uploads that are checked while they
//! stream (hash, size limit), idempotent retries, streamed downloads, auth, runs whose bundle is a
//! blob, and the sweep removing blobs no run refers to.

use std::time::Duration;

use aac_manager::protocol::{BundleRef, CreateRun};
use aac_manager::server::start;
use aac_manager::{Manager, ManagerClient, ManagerConfig, ManagerHandle};
use sha2::{Digest, Sha256};

const TOKEN: &str = "blobs-token";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn manager(max: u64) -> (tempfile::TempDir, ManagerHandle, ManagerClient) {
    let dir = tempfile::tempdir().unwrap();
    let config = ManagerConfig::new(TOKEN).with_max_blob_bytes(max);
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let client = ManagerClient::new(handle.url(), TOKEN)
        .unwrap()
        .with_retry(aac_manager::RetryPolicy::none());
    (dir, handle, client)
}

fn blob_run(id: &str, sha: &str, size: u64) -> CreateRun {
    CreateRun {
        id: Some(id.into()),
        backend: "shell".into(),
        bundle: Some(BundleRef {
            kind: "blob".into(),
            location: format!("/v1/blobs/{sha}"),
            sha256: Some(sha.into()),
            size: Some(size),
        }),
        config: serde_json::json!({}),
        ..CreateRun::default()
    }
}

#[tokio::test]
async fn a_blob_goes_in_once_and_comes_back_whole() {
    let (_dir, _handle, client) = manager(1 << 20).await;
    let body = bytes::Bytes::from(vec![7u8; 300_000]);
    let hash = sha(&body);
    let first = client.put_blob(&hash, body.clone()).await.unwrap();
    assert!(first.created);
    assert_eq!(first.size, 300_000);
    let again = client.put_blob(&hash, body.clone()).await.unwrap();
    assert!(!again.created, "a retried upload is the same blob");
    let back = client.get_blob(&hash, 1 << 20).await.unwrap();
    assert_eq!(back, body);
}

#[tokio::test]
async fn a_body_that_is_not_its_hash_or_over_the_limit_is_refused_and_not_stored() {
    let (dir, handle, client) = manager(1000).await;
    let wrong = sha(b"something else");
    let err = client
        .put_blob(&wrong, bytes::Bytes::from_static(b"hello"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    let err = client.get_blob(&wrong, 1 << 20).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");

    let big = bytes::Bytes::from(vec![1u8; 1001]);
    let err = client.put_blob(&sha(&big), big.clone()).await.unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");

    // Streamed without a length: cut at the limit all the same.
    let stream = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![2u8; 100]))),
    );
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/blobs/{}", handle.url(), sha(&[2u8; 2000])))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "payload-too-large");

    // Nothing half-written is left behind.
    let blobs = dir.path().join("m.redb.blobs");
    assert_eq!(std::fs::read_dir(blobs.join("sha256")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(blobs.join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn blobs_need_the_bearer_token() {
    let (_dir, handle, _client) = manager(1000).await;
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/blobs/{}", handle.url(), sha(b"x")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_run_on_a_missing_or_mismatched_blob_is_not_created() {
    let (_dir, _handle, client) = manager(1 << 20).await;
    let body = bytes::Bytes::from_static(b"a tar, say");
    let hash = sha(&body);
    let err = client
        .create_run(blob_run("r1", &hash, body.len() as u64))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("upload it first"), "{err}");
    assert_eq!(client.get_run("r1").await.unwrap_err().status(), Some(404));

    client.put_blob(&hash, body.clone()).await.unwrap();
    let err = client
        .create_run(blob_run("r1", &hash, 3))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    let mut other = blob_run("r1", &hash, body.len() as u64);
    other.bundle.as_mut().unwrap().sha256 = Some(sha(b"other"));
    let err = client.create_run(other).await.unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");

    let run = client
        .create_run(blob_run("r1", &hash, body.len() as u64))
        .await
        .unwrap();
    assert_eq!(run.bundle.unwrap().kind, "blob");
}

#[test]
fn the_sweep_removes_blobs_only_once_no_run_refers_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = aac_manager::Store::open(
        dir.path().join("m.redb"),
        std::sync::Arc::new(aac_manager::SystemClock),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let put = |body: &'static [u8]| {
        let hash = sha(body);
        let stream =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(body))]);
        rt.block_on(store.blobs().put(&hash, stream, 1000)).unwrap();
        hash
    };
    let used = put(b"used by a run");
    let unused = put(b"used by nothing");
    store.create_run(blob_run("r1", &used, 13)).unwrap();
    assert_eq!(
        store.sweep_blobs(Duration::from_secs(3600)).unwrap(),
        0,
        "within the grace"
    );
    assert_eq!(store.sweep_blobs(Duration::ZERO).unwrap(), 1);
    assert!(store.blobs().size(&unused).is_none());
    assert!(store.blobs().size(&used).is_some());
    // Retention: the run goes, and its bundle with it.
    store.cancel_run("r1").unwrap();
    store.delete_run("r1").unwrap();
    assert_eq!(store.sweep_blobs(Duration::ZERO).unwrap(), 1);
    assert!(store.blobs().size(&used).is_none());
}

/// A lost attempt interrupted command 2 after command 1 finished: with command 1's result stored
/// whole, command 2 goes back to the queue (the next attempt restores command 1's change first);
/// without it, the run fails as before, naming why.
#[test]
fn a_lost_command_is_queued_again_only_when_the_finished_ones_can_be_restored() {
    use aac_manager::outcome::TurnOutcome;
    use aac_manager::protocol::{
        ClaimRequest, CommandStatus, EnqueueCommand, RegisterRunner, ReleaseRequest, RunStatus,
    };
    use aac_manager::results::CommandResult;
    for stored in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = aac_manager::Store::open(
            dir.path().join("m.redb"),
            std::sync::Arc::new(aac_manager::SystemClock),
        )
        .unwrap();
        store
            .register_runner(RegisterRunner {
                id: Some("w".into()),
                ..Default::default()
            })
            .unwrap();
        let mut run = blob_run("r", &sha(b"x"), 1);
        run.bundle = None;
        store.create_run(run).unwrap();
        for id in ["c1", "c2"] {
            store
                .enqueue(
                    "r",
                    EnqueueCommand {
                        id: Some(id.into()),
                        prompt: id.into(),
                        payload: serde_json::json!({}),
                    },
                )
                .unwrap();
        }
        let lease = store
            .claim(
                "r",
                ClaimRequest {
                    runner_id: "w".into(),
                    lease_seconds: Some(60),
                    placement: None,
                },
            )
            .unwrap();
        let token = lease.lease_token;
        store.ack("r", "c1", &token).unwrap();
        if stored {
            store
                .put_result("r", "c1", &token, CommandResult::default())
                .unwrap();
        }
        store
            .set_command_status("r", "c1", &token, TurnOutcome::completed())
            .unwrap();
        store.ack("r", "c2", &token).unwrap();
        let run = store
            .release("r", &token, ReleaseRequest { message: None })
            .unwrap();
        let c2 = store.get_command("r", "c2").unwrap();
        if stored {
            assert_eq!(run.status, RunStatus::Queued, "{run:?}");
            assert_eq!(c2.status, CommandStatus::Queued);
        } else {
            assert_eq!(run.status, RunStatus::Failed, "{run:?}");
            assert!(run.message.unwrap().contains("cannot be restored"));
        }
    }
}
