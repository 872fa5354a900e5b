//! Every stored event carries the runner's emit time as sent and the manager's receive time,
//! stamped by the manager whatever the runner claims; a runner that sends neither still works.

use std::sync::Arc;
use std::time::Duration;

use aac_manager::outcome::TurnEvent;
use aac_manager::protocol::{AppendEvents, CreateRun, EnqueueCommand, RegisterRunner};
use aac_manager::server::start;
use aac_manager::{Clock, Manager, ManagerClient, ManagerConfig, ManualClock};

const TOKEN: &str = "t";

fn event(seq: u64, cmd: &str, emitted: Option<u64>, received: Option<u64>) -> TurnEvent {
    TurnEvent {
        seq,
        command_id: cmd.into(),
        kind: "output.stdout".into(),
        payload: serde_json::json!({ "text": seq.to_string() }),
        attempt_id: None,
        emitted_at_ms: emitted,
        received_at_ms: received,
    }
}

#[tokio::test]
async fn events_carry_the_emit_time_sent_and_the_managers_receive_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let config = ManagerConfig::new(TOKEN).with_clock(Arc::new(clock.clone()));
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let client = ManagerClient::new(handle.url(), TOKEN).unwrap();
    let run = client.create_run(CreateRun::new("shell")).await.unwrap();
    let runner = client
        .register_runner(RegisterRunner::default())
        .await
        .unwrap()
        .id;
    let lease = client
        .claim(&run.id, &runner, Duration::from_secs(30))
        .await
        .unwrap();
    let cmd = client
        .enqueue(
            &run.id,
            EnqueueCommand {
                id: None,
                prompt: "p".into(),
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    let first_at = clock.now_ms();
    // The runner claims a receive time of its own: the manager's stamp replaces it.
    let batch = AppendEvents {
        events: vec![event(1, &cmd.id, Some(1_600_000_000_123), Some(42))],
        dropped: 0,
    };
    client
        .append_events(&run.id, &lease.lease_token, &batch)
        .await
        .unwrap();
    clock.advance(Duration::from_millis(250));
    // An old runner sends no times at all: its body is still accepted.
    let old = serde_json::json!({
        "events": [{ "seq": 2, "command_id": cmd.id, "kind": "output.stdout", "payload": {} }]
    });
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/runs/{}/events", handle.url(), run.id))
        .bearer_auth(TOKEN)
        .header("X-Lease-Token", &lease.lease_token)
        .json(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        200,
        "{}",
        answer.text().await.unwrap()
    );

    let events = client.events(&run.id, 0).await.unwrap();
    assert_eq!(events[0].emitted_at_ms, Some(1_600_000_000_123));
    assert_eq!(events[0].received_at_ms, Some(first_at));
    assert_eq!(events[1].emitted_at_ms, None);
    assert_eq!(events[1].received_at_ms, Some(first_at + 250));
    // The NDJSON stream shows both names.
    let text = reqwest::Client::new()
        .get(format!("{}/v1/runs/{}/events", handle.url(), run.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["emitted_at_ms"], 1_600_000_000_123u64);
    assert_eq!(line["received_at_ms"], first_at);
    handle.shutdown().await.unwrap();
}
