//! A runner creates and starts at most `[docker] concurrent_starts` containers at once: a burst of
//! cold starts all at once would hold every core. The engine's event log shows when each
//! container was created and started, so the test sees whether two starts overlapped. Real dockerd.

use std::time::SystemTime;

use aac_host::sandbox::{SandboxDriver, SandboxSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_created_and_started_one_at_a_time_when_told() {
    let driver = aac_tests::docker()
        .await
        .with_runner_id("test-sandbox-starts")
        .with_concurrent_starts(1);
    let user = aac_host::local::sandbox_user();
    let workspaces: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let specs: Vec<_> = workspaces
        .iter()
        .map(|workspace| {
            aac_host::sandbox::pool::prepare_workspace(workspace.path(), &user).unwrap();
            SandboxSpec::new(
                aac_host::local::DEFAULT_IMAGE,
                workspace.path().to_path_buf(),
                user.clone(),
            )
        })
        .collect();

    let since = SystemTime::now();
    let opened = futures::future::join_all(specs.iter().map(|spec| driver.open(spec))).await;
    let sandboxes: Vec<_> = opened.into_iter().map(Result::unwrap).collect();
    let until = SystemTime::now();

    let mut starts = Vec::new();
    for sandbox in &sandboxes {
        let created = aac_tests::engine_events(sandbox.id(), "create", since, until).await;
        let started = aac_tests::engine_events(sandbox.id(), "start", since, until).await;
        assert_eq!((created.len(), started.len()), (1, 1), "{}", sandbox.id());
        starts.push((created[0], started[0]));
    }
    starts.sort();
    for pair in starts.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "a container was created before the one before it had started: {starts:?}"
        );
    }
    for sandbox in sandboxes {
        sandbox.remove().await.unwrap();
    }
}
