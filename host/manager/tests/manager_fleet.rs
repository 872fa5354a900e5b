//! The fleet view and runner labels: `GET /v1/runners` shows each runner's labels, version, last
//! heartbeat and held runs; a run that requires labels is claimed only by a runner with them, and
//! runs it cannot take do not block the ones it can.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aac_manager::protocol::{CreateRun, RegisterRunner};
use aac_manager::server::start;
use aac_manager::{ClientError, Manager, ManagerClient, ManagerConfig, ManualClock};

const TOKEN: &str = "t";
const LEASE: Duration = Duration::from_secs(30);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(id: &str, require: &[(&str, &str)]) -> CreateRun {
    CreateRun {
        id: Some(id.into()),
        backend: "shell".into(),
        require_labels: labels(require),
        ..CreateRun::default()
    }
}

async fn register(client: &ManagerClient, id: &str, offered: &[(&str, &str)]) {
    client
        .register_runner(RegisterRunner {
            id: Some(id.into()),
            name: id.into(),
            labels: labels(offered),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn runs_go_only_to_runners_with_their_labels_and_the_fleet_shows_who_holds_what() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let config = ManagerConfig::new(TOKEN).with_clock(Arc::new(clock.clone()));
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let client = ManagerClient::new(handle.url(), TOKEN).unwrap();
    register(&client, "cpu", &[("version", "9.9.9")]).await;
    register(&client, "gpu", &[("gpu", "a100"), ("zone", "eu")]).await;

    // Oldest first: a GPU run, a run for a label nobody has, then a plain run.
    clock.advance(Duration::from_millis(1));
    let gpu_run = client
        .create_run(run("needs-gpu", &[("gpu", "a100")]))
        .await
        .unwrap();
    assert_eq!(gpu_run.require_labels, labels(&[("gpu", "a100")]));
    clock.advance(Duration::from_millis(1));
    client
        .create_run(run("needs-tpu", &[("tpu", "v5")]))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(1));
    client.create_run(run("plain", &[])).await.unwrap();

    // The CPU runner passes over the runs it lacks labels for and takes the plain one.
    let cpu = client
        .claim_next("cpu", LEASE, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cpu.run.id, "plain");
    assert!(
        client
            .claim_next("cpu", LEASE, None)
            .await
            .unwrap()
            .is_none()
    );
    let gpu = client
        .claim_next("gpu", LEASE, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gpu.run.id, "needs-gpu");
    assert!(
        client
            .claim_next("gpu", LEASE, None)
            .await
            .unwrap()
            .is_none(),
        "nobody offers tpu=v5: the run stays queued"
    );
    assert_eq!(
        client.get_run("needs-tpu").await.unwrap().status,
        aac_manager::protocol::RunStatus::Queued
    );

    clock.advance(Duration::from_millis(500));
    client
        .heartbeat("needs-gpu", &gpu.lease_token, None)
        .await
        .unwrap();
    let fleet = client.list_runners().await.unwrap();
    let by_id = |id: &str| fleet.iter().find(|r| r.runner.id == id).unwrap().clone();
    let (cpu_info, gpu_info) = (by_id("cpu"), by_id("gpu"));
    assert_eq!(cpu_info.version.as_deref(), Some("9.9.9"));
    assert_eq!(cpu_info.runs_held, ["plain"]);
    assert_eq!(
        cpu_info.runner.last_heartbeat_ms, None,
        "it never heartbeated"
    );
    assert_eq!(gpu_info.runs_held, ["needs-gpu"]);
    assert_eq!(
        gpu_info.runner.labels,
        labels(&[("gpu", "a100"), ("zone", "eu")])
    );
    assert_eq!(gpu_info.runner.last_heartbeat_ms, Some(1_000_503));
    assert_eq!(gpu_info.runner.last_seen_ms, Some(1_000_503));

    // Bad requirements are refused, naming what was wrong; a changed requirement is another run.
    let empty_key = client
        .create_run(run("bad", &[(" ", "x")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&empty_key, ClientError::Status { status: 400, .. })
            && empty_key.to_string().contains("empty key"),
        "{empty_key}"
    );
    let changed = client
        .create_run(run("plain", &[("gpu", "a100")]))
        .await
        .unwrap_err();
    assert!(changed.to_string().contains("different body"), "{changed}");
    // The fleet needs the token like every /v1 endpoint.
    let anonymous = reqwest::get(format!("{}/v1/runners", handle.url()))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    handle.shutdown().await.unwrap();
}
