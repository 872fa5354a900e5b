//! A turn never fails because an agent printed a lot: big lines are cut with a marker, floods past
//! the rate are dropped and counted (the run's `dropped_events` and a marker event say how many and
//! where) while the turn goes on, batches fit the manager's request limit, and non-UTF-8 output
//! keeps a count of what was replaced. Real shell plugin, real sandboxes, real manager.

use aac_host::manager::protocol::RunStatus;
use aac_host::outcome::TurnEvent;
use aac_host::plugin::capability::events::DROPPED_KIND;
use aac_host::plugin::{PluginHost, PluginHostConfig, PluginLimits};
use aac_tests::runs::{TestManager, runner_config, shell_runner};

/// Runs `script` as the one command of a shell run on a host with `limits`; the run and its events.
async fn shell_run(
    script: &str,
    limits: PluginLimits,
) -> (aac_host::manager::protocol::Run, Vec<TurnEvent>) {
    let manager = TestManager::start().await;
    let client = manager.client();
    let run = manager.shell_run(&[script]).await;
    let root = tempfile::tempdir().unwrap();
    let host = PluginHost::new(PluginHostConfig {
        limits,
        ..PluginHostConfig::default()
    })
    .unwrap();
    let runner = shell_runner(
        client.clone(),
        &host,
        runner_config("big-output", root.path()),
    )
    .await;
    runner
        .run(&run.id)
        .await
        .expect("the runner worked on the run");
    let stored = client.get_run(&run.id).await.unwrap();
    let events = client.events(&run.id, 0).await.unwrap();
    (stored, events)
}

fn output(events: &[TurnEvent]) -> Vec<&TurnEvent> {
    events
        .iter()
        .filter(|e| e.kind == "output.stdout")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_lines_of_200_kb_reach_the_manager_whole() {
    let script = "i=0; while [ $i -lt 40 ]; do dd if=/dev/zero bs=200000 count=1 2>/dev/null | tr '\\0' x; echo; i=$((i+1)); done";
    let (run, events) = shell_run(script, PluginLimits::default()).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let lines = output(&events);
    assert_eq!(lines.len(), 40);
    assert!(
        lines
            .iter()
            .all(|e| e.payload["text"].as_str().unwrap().len() == 200_000)
    );
    assert_eq!(run.dropped_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_flood_is_dropped_and_counted_and_the_turn_goes_on() {
    let limits = PluginLimits {
        // Low enough that `seq` outruns it on any machine.
        events_per_second: 2_000,
        ..PluginLimits::default()
    };
    let script = "seq 1 20000; sleep 1.5; echo after-the-flood";
    let (run, events) = shell_run(script, limits).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let lines = output(&events);
    let markers: Vec<_> = events.iter().filter(|e| e.kind == DROPPED_KIND).collect();
    let dropped: u64 = markers
        .iter()
        .map(|e| e.payload["dropped"].as_u64().unwrap())
        .sum();
    assert!(dropped > 0, "{} lines, no drop", lines.len());
    assert_eq!(lines.len() as u64 + dropped, 20_001);
    assert_eq!(run.dropped_events, dropped, "the run counts them");
    assert!(
        markers[0].payload["reason"]
            .as_str()
            .unwrap()
            .contains("per second")
    );
    // The marker sits where output went missing: before the line that came after the flood.
    assert_eq!(lines.last().unwrap().payload["text"], "after-the-flood");
    let marker_seq = markers.last().unwrap().seq;
    assert!(marker_seq < lines.last().unwrap().seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_20000_completes_with_the_default_limits() {
    let (run, events) = shell_run("seq 1 20000", PluginLimits::default()).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(output(&events).len() as u64 + run.dropped_events, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_line_is_cut_with_a_marker_and_bad_utf8_is_counted() {
    let script = "dd if=/dev/zero bs=1000000 count=1 2>/dev/null | tr '\\0' y; echo; printf 'ok \\377\\376 end\\n'";
    let (run, events) = shell_run(script, PluginLimits::default()).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let lines = output(&events);
    assert_eq!(
        lines.len(),
        2,
        "{:?}",
        events.iter().map(|e| &e.kind).collect::<Vec<_>>()
    );
    let big = &lines[0].payload;
    assert_eq!(big["truncated"], true);
    assert_eq!(big["original_bytes"], 1_000_000);
    assert!(big.to_string().len() <= 256 << 10);
    assert!(big["text"].as_str().unwrap().starts_with("yyyy"));
    let bad = &lines[1].payload;
    assert_eq!(bad["text"], "ok \u{FFFD}\u{FFFD} end");
    assert_eq!(bad["invalid_utf8_bytes"], 2);
    assert_eq!(bad["bytes"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_request_limit_is_split_and_never_a_lease_loss() {
    use aac_host::manager::protocol::RegisterRunner;
    use aac_host::runner::BatchPolicy;
    use aac_host::runner::events::EventShipper;
    use std::time::Duration;

    let manager = TestManager::start().await;
    let client = manager.client();
    let run = manager.shell_run(&["echo never"]).await;
    client
        .register_runner(RegisterRunner {
            id: Some("r-413".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let lease = client
        .claim(&run.id, "r-413", Duration::from_secs(60))
        .await
        .unwrap();
    // A runner whose batches would be 8 MB: the manager answers 413.
    let policy = BatchPolicy {
        max_events: 1000,
        max_batch_bytes: 64 << 20,
        ..BatchPolicy::default()
    };
    let (events, shipper) = EventShipper::start(&client, run.id.clone(), lease.lease_token, policy);
    let line = |seq: u64, bytes: usize| TurnEvent {
        seq,
        command_id: "c1".into(),
        kind: "output.stdout".into(),
        payload: serde_json::json!({ "text": "x".repeat(bytes) }),
        attempt_id: None,
        emitted_at_ms: None,
        received_at_ms: None,
    };
    for seq in 1..=40 {
        events.send(line(seq, 200_000)).unwrap();
    }
    // One event no manager of this protocol takes: dropped and counted, the rest goes on.
    events.send(line(41, 3_000_000)).unwrap();
    events.send(line(42, 10)).unwrap();
    let stats = shipper.flush().await.expect("a 413 is not fatal");
    assert_eq!((stats.sent, stats.dropped), (41, 1), "{stats:?}");
    let stored = client.events(&run.id, 0).await.unwrap();
    assert_eq!(stored.len(), 41);
    assert_eq!(client.get_run(&run.id).await.unwrap().dropped_events, 1);
    assert_eq!(stored.last().unwrap().seq, 42);
}

/// Far past the rate for long: the plugin asks the host whether it takes output and skips building
/// the lines it would drop (reporting how many), so the flood costs it a line split per line and
/// the turn completes within its CPU budget, every line stored or counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_line_flood_completes_within_the_plugins_cpu_budget_and_every_line_is_counted() {
    // The default limits: 10 000 events a second reach the manager while the rest is skipped.
    let (run, events) = shell_run("seq 1 1000000", PluginLimits::default()).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let lines = output(&events);
    assert!(run.dropped_events > 0, "{} lines, no drop", lines.len());
    let marked: u64 = events
        .iter()
        .filter(|e| e.kind == DROPPED_KIND)
        .map(|e| e.payload["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(
        lines.len() as u64 + run.dropped_events,
        1_000_000,
        "{} lines stored, {marked} marked dropped, last seq {:?}; {}",
        lines.len(),
        events.last().map(|e| e.seq),
        unmarked_gaps(&events, 1_000_000)
    );
    // Markers are placed at most about once a second among output, not before every admitted line.
    let markers = events.iter().filter(|e| e.kind == DROPPED_KIND).count();
    assert!(
        markers * 10 < lines.len(),
        "{markers} markers for {} lines",
        lines.len()
    );
}

/// Where `seq 1 N`'s output went missing without a marker covering it: each marker's count is
/// compared with the numbers missing between the lines around it.
fn unmarked_gaps(events: &[TurnEvent], n: u64) -> String {
    let mut report = Vec::new();
    let (mut last, mut gaps, mut marked) = (0u64, 0u64, None::<u64>);
    for e in events {
        if e.kind == DROPPED_KIND {
            marked = Some(marked.unwrap_or(0) + e.payload["dropped"].as_u64().unwrap());
        } else if e.kind == "output.stdout" {
            let t: u64 = e.payload["text"].as_str().unwrap().parse().unwrap();
            gaps += t - last - 1;
            last = t;
            if let Some(d) = marked.take() {
                if d != gaps {
                    report.push(format!("seq {}: marker {d} vs gap {gaps}", e.seq));
                }
                gaps = 0;
            }
        } else {
            report.push(format!("seq {}: {} {}", e.seq, e.kind, e.payload));
        }
    }
    gaps += n - last;
    report.push(format!(
        "end: last line {last}, trailing gap {gaps}, trailing marker {marked:?}"
    ));
    report.join("; ")
}
