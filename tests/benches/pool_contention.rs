//! A healthy turn while hostile runs share the pool (`cargo xtask bench`, or
//! `cargo bench -p aac-tests --bench pool_contention`), printed for docs/benchmarks.md. One pool
//! runner (the real release binary, `--max-runs 8`, a config with the `shell` and the hostile test
//! runtimes) and the real manager. The healthy run's second command (the first one opened the
//! session and its sandbox) prints 3 000 lines from a shell loop; its turn time, from the
//! manager's ack of the command to its terminal status, is measured alone and while 7 hostile runs
//! hold the other slots: two spinning on CPU, one flooding events, one growing its memory, one
//! blocked in a WASI wait, one sleeping, one holding 20 processes. Goal: within 1.2× of alone.
//!
//! Every measurement starts once the runs measured before it have no container left (a run ends
//! before its sandbox is torn down): alone is alone.
//!
//! Two moments, each with its own rounds: *as they start* (500 ms after the runner claimed them:
//! their sandboxes are still being created, which costs the same for any seven runs; compare
//! `AAC_BENCH_HOSTILE=ok,ok,ok,ok,ok,ok,ok`) and *in their turns* (500 ms after every hostile
//! command was acked, i.e. each plugin is doing what it came to do).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aac_host::manager::ManagerClient;
use aac_host::manager::protocol::RunStatus;
use aac_tests::plugin;
use aac_tests::runs::{TOKEN, TestManager, queued_run};

const HEALTHY: &str = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done";
const HOSTILE: [&str; 7] = [
    "spin", "spin", "flood", "grow", "block", "sleep 40", "spawn 20",
];
/// Rounds alone and with the hostile runs (`AAC_BENCH_REPEATS` to change): a turn of ~200 ms
/// varies by tens of ms between rounds on the same machine, so a median needs several.
const REPEATS: usize = 7;

fn repeats() -> usize {
    std::env::var("AAC_BENCH_REPEATS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(REPEATS)
}

/// The hostile prompts: the seven above, or `AAC_BENCH_HOSTILE` (comma-separated, e.g. `spin,spin`)
/// to see which of them costs the healthy turn what.
fn hostile_prompts() -> Vec<String> {
    match std::env::var("AAC_BENCH_HOSTILE") {
        Ok(list) => list.split(',').map(|p| p.trim().to_string()).collect(),
        Err(_) => HOSTILE.iter().map(|p| p.to_string()).collect(),
    }
}

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("aac.toml");
    let runtime = |name: &str, plugin: &std::path::Path| {
        format!(
            "[runtimes.{name}]\nplugin = \"{}\"\ndefault_version = \"1\"\n\
             versions.\"1\".image = \"aac/busybox:latest\"\n\
             sandbox = {{ memory = \"256MiB\", pids = 64, cpus = 1.0, network = \"none\" }}\n\
             pull_policy = \"never\"\n\n",
            plugin.display()
        )
    };
    // `AAC_BENCH_LIMITS`: more `[limits]` lines, to try other pacing (e.g. `cpu_share = 0.1`).
    let extra = std::env::var("AAC_BENCH_LIMITS").unwrap_or_default();
    let text = format!(
        "[limits]\nturn_wall = \"60s\"\n{extra}\n\n{}{}",
        runtime("shell", &plugin("shell")),
        runtime("hostile", &plugin("test-hostile")),
    );
    std::fs::write(&config, text).unwrap();
    config
}

async fn create(client: &ManagerClient, backend: &str, prompts: &[&str]) -> String {
    queued_run(client, backend, prompts).await.id
}

/// The healthy run's measured turn, in ms: from the ack of `c2` to its terminal status, both
/// stamped by the manager (polled every 50 ms: the poll neither rounds the figure nor adds load
/// beside the turn).
async fn healthy_turn(client: &ManagerClient) -> f64 {
    let run = create(client, "shell", &["true", HEALTHY]).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the healthy run did not end");
        let command = client.get_command(&run, "c2").await.unwrap();
        if command.status.is_terminal() {
            let outcome = command.outcome.clone().unwrap();
            assert_eq!(
                outcome.status,
                aac_host::outcome::TerminalStatus::Completed,
                "{outcome:?}"
            );
            let acked = command.acked_at_ms.unwrap();
            let turn = command.finished_at_ms.unwrap().saturating_sub(acked) as f64;
            // A run stays open for more commands: ended, it gives its pool slot back.
            let _ = client.cancel_run(&run).await;
            wait_ended(client, std::slice::from_ref(&run)).await;
            wait_torn_down(&[run]).await;
            eprintln!("healthy turn: {turn:.0} ms");
            return turn;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until `done` holds for every run (polled every 50 ms); `what` says what did not happen in time.
async fn wait_each<F, Fut>(runs: &[String], what: &str, done: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    'wait: loop {
        assert!(Instant::now() < deadline, "{what}");
        for run in runs {
            if !done(run.clone()).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'wait;
            }
        }
        return;
    }
}

async fn wait_running(client: &ManagerClient, runs: &[String]) {
    wait_each(
        runs,
        "the hostile runs were not all claimed",
        |run| async move { client.get_run(&run).await.unwrap().status != RunStatus::Queued },
    )
    .await
}

/// Until every run's first command has started its turn (acked by the runner) or already ended.
async fn wait_in_turn(client: &ManagerClient, runs: &[String]) {
    wait_each(
        runs,
        "the hostile runs did not all start their turns",
        |run| async move {
            let command = client.get_command(&run, "c1").await.unwrap();
            command.acked_at_ms.is_some() || command.status.is_terminal()
        },
    )
    .await
}

/// Until none of `runs` has a container left: a run's status is terminal before its sandbox is
/// torn down, and a teardown is engine work a measurement would otherwise share the cores with.
async fn wait_torn_down(runs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for run in runs {
        while aac_tests::containers_of_run(run).await > 0 {
            assert!(
                Instant::now() < deadline,
                "run {run}'s sandbox was not removed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn wait_ended(client: &ManagerClient, runs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for run in runs {
        while !client.get_run(run).await.unwrap().status.is_terminal() {
            assert!(Instant::now() < deadline, "hostile run {run} did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn pool_runner(url: &str, config: &std::path::Path, root: &std::path::Path) -> Child {
    Command::new(aac_tests::aac_host_binary())
        .arg("--config")
        .arg(config)
        .args(["--manager-url", url, "--max-runs", "8"])
        .args(["--runner-id", "bench-contention", "--lease", "6s", "--json"])
        .arg("--workspace-root")
        .arg(root)
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", root.join("cache"))
        .stdout(Stdio::null())
        .stderr(runner_log())
        .spawn()
        .expect("starting aac-host")
}

/// The runner's log: `AAC_BENCH_RUNNER_LOG=path` keeps it (with the runner's `AAC_LOG`), to see
/// where a slow turn's time went; by default it is dropped.
fn runner_log() -> Stdio {
    match std::env::var_os("AAC_BENCH_RUNNER_LOG") {
        Some(path) => std::fs::File::create(&path)
            .map(Stdio::from)
            .unwrap_or_else(|err| panic!("creating {}: {err}", path.to_string_lossy())),
        None => Stdio::null(),
    }
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{min:.0}–{max:.0}")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut runner = pool_runner(&manager.url(), &config, dir.path());

    // Alone: the first run also compiles and caches the plugin; it is not counted.
    healthy_turn(&client).await;
    let repeats = repeats();
    let prompts = hostile_prompts();
    let (mut alone, mut starting, mut in_turns) = (Vec::new(), Vec::new(), Vec::new());
    // Each round measures alone, as they start and in their turns one after the other, so the
    // three see the machine alike (a turn alone varied 130–330 ms between rounds minutes apart).
    for _ in 0..repeats {
        alone.push(healthy_turn(&client).await);
        for settled in [false, true] {
            let mut hostile = Vec::new();
            for prompt in &prompts {
                hostile.push(create(&client, "hostile", &[prompt.as_str()]).await);
            }
            wait_running(&client, &hostile).await;
            if settled {
                wait_in_turn(&client, &hostile).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let turn = healthy_turn(&client).await;
            if settled {
                in_turns.push(turn);
            } else {
                starting.push(turn);
            }
            for run in &hostile {
                let _ = client.cancel_run(run).await;
            }
            wait_ended(&client, &hostile).await;
            wait_torn_down(&hostile).await;
        }
    }

    let _ = Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status();
    let _ = runner.wait();

    let alone_range = range(&alone);
    let alone = median(alone);
    for (moment, turns) in [("as they start", starting), ("in their turns", in_turns)] {
        let shared_range = range(&turns);
        let shared = median(turns);
        println!(
            "healthy shell turn (3 000 lines), pool of 8 (release binary): alone {alone:.0} ms \
             ({alone_range}), with {} hostile runs ({}) {moment}: {shared:.0} ms ({shared_range}): \
             {:.2}× (goal ≤ 1.2×); medians of {repeats}",
            prompts.len(),
            prompts.join(", "),
            shared / alone
        );
    }
}
