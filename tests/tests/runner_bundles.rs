//! A run's resource bundle through the runner: materialized once before the first command, and a
//! hostile bundle failing the run as `resource-bundle` before anything runs.

use std::time::Duration;

use aac_host::manager::protocol::EnqueueCommand;
use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_tests::runs::{TestManager, assert_contiguous_events, runner_config, shell_runner};
use aac_tests::{containers_of_run, test_host};

/// `[bundles]` settings with the first-party bundle materializer and defaults.
fn bundle_settings() -> aac_host::config::BundleSettings {
    aac_host::config::BundleSettings {
        plugin: aac_tests::plugin("bundle"),
        plugin_sha256: None,
        grants: Default::default(),
        limits: Default::default(),
        cpu: Duration::from_secs(10),
        wall: Duration::from_secs(60),
        trust: Default::default(),
    }
}

async fn bundle_run(
    manager: &TestManager,
    bundle: aac_host::manager::protocol::BundleRef,
    prompt: &str,
) -> String {
    let client = manager.client();
    let run = client
        .create_run(aac_host::manager::protocol::CreateRun {
            id: None,
            backend: "shell".into(),
            bundle: Some(bundle),
            config: serde_json::json!({}),
            max_attempts: None,
            require_labels: Default::default(),
        })
        .await
        .unwrap();
    client
        .enqueue(
            &run.id,
            EnqueueCommand {
                id: Some("c1".into()),
                prompt: prompt.into(),
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    run.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_bundle_is_materialized_once_before_its_first_command() {
    use aac_tests::bundle::{Entry, archive, manifest_for, save};
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let entries = [
        Entry::file("README.md", "from the bundle\n"),
        Entry::file("src/main.sh", "echo main\n"),
    ];
    let bundle = save(
        root.path(),
        "b.tar",
        &archive(&manifest_for(&entries), &entries),
    );
    let run = bundle_run(
        &manager,
        bundle,
        "cat README.md; sh src/main.sh; echo edited >> README.md",
    )
    .await;
    client
        .enqueue(
            &run,
            EnqueueCommand {
                id: Some("c2".into()),
                prompt: "cat README.md".into(),
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    let runner = shell_runner(
        client.clone(),
        &host,
        runner_config("r-bundle", root.path()),
    )
    .await
    .with_bundles(Some(bundle_settings()));

    let report = runner.run(&run).await.unwrap();
    assert_eq!(report.status(), TerminalStatus::Completed, "{report:?}");
    let lines = assert_contiguous_events(&client, &run).await;
    assert_eq!(
        lines,
        ["from the bundle", "main", "from the bundle", "edited"],
        "the sandbox user can change the bundle's files, and the second command sees the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_bundle_fails_the_run_as_resource_bundle_before_any_command() {
    use aac_tests::bundle::{Entry, archive, manifest_for, save};
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let entries = [Entry::file("../escape.txt", "x")];
    let bundle = save(
        root.path(),
        "evil.tar",
        &archive(&manifest_for(&entries), &entries),
    );
    let run = bundle_run(&manager, bundle, "echo never").await;
    let runner = shell_runner(client.clone(), &host, runner_config("r-evil", root.path()))
        .await
        .with_bundles(Some(bundle_settings()));

    let report = runner.run(&run).await.unwrap();
    assert_eq!(
        report.failure_kind(),
        Some(FailureKind::ResourceBundle),
        "{report:?}"
    );
    let message = report.outcome.message.clone().unwrap_or_default();
    assert!(
        message.contains("../escape.txt"),
        "names the entry: {message}"
    );
    assert!(!root.path().join(&run).join("escape.txt").exists());
    let workspace = root.path().join(&run).join("workspace");
    let left: Vec<_> = std::fs::read_dir(&workspace)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(left.iter().all(|&n| n == 0), "the workspace is left clean");
    assert_eq!(containers_of_run(&run).await, 0, "no sandbox was started");
    let stored = client.get_run(&run).await.unwrap();
    assert_eq!(stored.failure_kind, Some(FailureKind::ResourceBundle));
}
