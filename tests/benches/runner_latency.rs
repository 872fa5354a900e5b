//! Runner latencies and scale (`cargo xtask bench`), printed as a table for docs/benchmarks.md:
//!
//! * cancellation: from a client's `POST /cancel` to the turn's process being gone (its output
//!   closed), through the embedded manager, the runner's cancellation long-poll and the sandbox's
//!   TERM → KILL — p50/p99 over many turns;
//! * per-turn overhead: from the manager receiving a command's ack to the runner asking the sandbox
//!   for the turn's first exec, for later commands of a run (session warm);
//! * pool mode: the real `aac-host --max-runs 32` binary working on 32 runs at once: heartbeat
//!   gaps (missed heartbeats) and the host's peak RSS.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_host::manager::ManagerClient;
use aac_host::manager::protocol::RunStatus;
use aac_host::plugin::PluginLimits;
use aac_host::sandbox::SandboxDriver;
use aac_tests::fault_proxy::FaultProxy;
use aac_tests::recording::RecordingDriver;
use aac_tests::runs::{
    TOKEN, TestManager, is_line, runner_config, shell_runner_on, wait_for_event,
};
use aac_tests::{docker, plugin, test_host, test_host_with, test_limits};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn recording_driver(runner_id: &str) -> RecordingDriver {
    RecordingDriver::new(docker().await.with_runner_id(runner_id))
}

async fn cancellation_latency(samples: usize) {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let host = test_host(None);
    let driver = recording_driver("bench-cancel").await;
    let log = driver.log.clone();
    let runner = Arc::new(
        shell_runner_on(
            client.clone(),
            &host,
            runner_config("bench-cancel", root.path()),
            Arc::new(driver) as Arc<dyn SandboxDriver>,
        )
        .await,
    );
    let mut latencies = Vec::new();
    for _ in 0..samples {
        let run = manager.shell_run(&["echo started; sleep 60"]).await;
        let work = tokio::spawn({
            let runner = runner.clone();
            let run = run.id.clone();
            async move { runner.run(&run).await }
        });
        wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
        let before = log.lock().unwrap().len();
        let cancelled_at = Instant::now();
        client.cancel_run(&run.id).await.unwrap();
        let report = work.await.unwrap().unwrap();
        assert_eq!(
            report.status(),
            aac_host::outcome::TerminalStatus::Cancelled
        );
        let ended = log.lock().unwrap()[before - 1]
            .ended
            .expect("the process ended");
        latencies.push(ended.duration_since(cancelled_at));
    }
    latencies.sort();
    println!(
        "cancellation (cancel → process gone), {samples} turns: p50 {}  p99 {}  max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
}

async fn per_turn_overhead(commands: usize) {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    let client = ManagerClient::new(&proxy.url, TOKEN).unwrap();
    let root = tempfile::tempdir().unwrap();
    // The turns follow each other as fast as they can: the process-start pace (which would count
    // its waits as overhead) is lifted; this measures the runner's own work.
    let host = test_host_with(
        None,
        PluginLimits {
            process_starts_per_second: 1000.0,
            process_start_burst: 1000,
            ..test_limits()
        },
    );
    let driver = recording_driver("bench-overhead").await;
    let log = driver.log.clone();
    let runner = shell_runner_on(
        client,
        &host,
        runner_config("bench-overhead", root.path()),
        Arc::new(driver) as Arc<dyn SandboxDriver>,
    )
    .await;
    let prompts: Vec<String> = (1..=commands).map(|i| format!("echo turn{i}")).collect();
    let prompt_refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let run = manager.shell_run(&prompt_refs).await;
    let report = runner.run(&run.id).await.unwrap();
    assert_eq!(report.commands.len(), commands);

    let acks: HashMap<String, Instant> = proxy
        .requests()
        .into_iter()
        .filter_map(|(line, at)| {
            let path = line.strip_prefix("POST ")?.strip_suffix("/ack")?;
            Some((path.rsplit('/').next()?.to_string(), at))
        })
        .collect();
    let execs = log.lock().unwrap().clone();
    let mut first = None;
    let mut overheads = Vec::new();
    for i in 1..=commands {
        let acked = acks[&format!("c{i}")];
        let exec = execs
            .iter()
            .find(|e| e.argv.iter().any(|a| a.contains(&format!("echo turn{i}"))))
            .expect("the turn's exec");
        let overhead = exec.called.duration_since(acked);
        if i == 1 {
            first = Some(overhead);
        } else {
            overheads.push(overhead);
        }
    }
    overheads.sort();
    println!(
        "per-turn overhead (ack → first exec), {} later turns: median {}  p99 {}; first turn (opens sandbox + session) {}",
        overheads.len(),
        ms(percentile(&overheads, 0.5)),
        ms(percentile(&overheads, 0.99)),
        ms(first.unwrap())
    );
}

/// Peak resident set of process `pid` so far, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn pool_mode(runs: usize) {
    let manager = TestManager::start().await;
    let proxy = FaultProxy::start(&manager.url()).await;
    let client = manager.client();
    let cache = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let lease = Duration::from_secs(6);
    let mut ids = Vec::new();
    for _ in 0..runs {
        let run = manager
            .shell_run(&["echo started; sleep 8; echo done"])
            .await;
        ids.push(run.id);
    }
    let started = Instant::now();
    let mut child = Command::new(aac_tests::aac_host_binary())
        .arg("--plugin")
        .arg(plugin("shell"))
        .args(["--manager-url", &proxy.url, "--max-runs", &runs.to_string()])
        .args([
            "--one-shot",
            "--lease",
            "6s",
            "--runner-id",
            "bench-pool",
            "--json",
        ])
        .arg("--workspace-root")
        .arg(root.path())
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    assert!(status.success(), "aac-host --max-runs exited with {status}");

    let mut completed = 0;
    for id in &ids {
        if client.get_run(id).await.unwrap().status == RunStatus::Completed {
            completed += 1;
        }
    }
    // Heartbeat arrivals per run; a gap longer than lease/3 plus a quarter is a missed beat.
    let mut beats: HashMap<String, Vec<Instant>> = HashMap::new();
    for (line, at) in proxy.requests() {
        if let Some(path) = line
            .strip_prefix("POST ")
            .and_then(|p| p.strip_suffix("/heartbeat"))
        {
            let run = path.rsplit('/').next().unwrap().to_string();
            beats.entry(run).or_default().push(at);
        }
    }
    let allowed = (lease / 3).mul_f64(1.25);
    let mut max_gap = Duration::ZERO;
    let mut missed = 0;
    for times in beats.values() {
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            max_gap = max_gap.max(gap);
            if gap > allowed {
                missed += 1;
            }
        }
    }
    println!(
        "pool mode, {runs} concurrent shell runs (lease 6 s, beat every ≤2 s): {completed}/{runs} completed in {:.1} s; \
         {} heartbeats, longest gap {}, missed {missed}; host peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        beats.values().map(Vec::len).sum::<usize>(),
        ms(max_gap),
        peak as f64 / 1024.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks sections by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if wanted("cancellation") {
            cancellation_latency(30).await;
        }
        if wanted("overhead") {
            per_turn_overhead(31).await;
        }
        if wanted("pool") {
            pool_mode(32).await;
        }
    });
}
