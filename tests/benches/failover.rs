//! Failover (`cargo xtask bench`, or `cargo bench -p aac-tests --bench failover`), printed for
//! docs/benchmarks.md: a runner process (the real binary) is killed with `kill -9` mid-turn; a
//! standby pool runner takes the run as attempt 2. Measured on one clock (the machine's):
//!
//! * failover: from the `kill -9` to the new attempt's first exec (the first file its command
//!   writes in its workspace), for a lease of 6 s and of 60 s (goal: at most lease + 2 s);
//! * overlap: from the old turn's last sign of life (the last touch of a file it touches every
//!   100 ms, until the dead-man's switch kills it) to the new attempt's first exec — always
//!   positive means the attempts never ran at once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use aac_tests::runs::{TOKEN, TestManager, is_line, wait_for_event};
use aac_tests::{aac_host_binary, plugin};

/// Marks the attempt's first exec, then lives for 3 s, touching `alive` every 100 ms.
const SCRIPT: &str = "[ -e started ] || touch started; echo started; i=0; \
                      while [ $i -lt 30 ]; do touch alive; sleep 0.1; i=$((i+1)); done";

fn runner(url: &str, args: &[&str], root: &std::path::Path, cache: &std::path::Path) -> Child {
    Command::new(aac_host_binary())
        .arg("--plugin")
        .arg(plugin("shell"))
        .args(["--manager-url", url])
        .args(args)
        .arg("--workspace-root")
        .arg(root)
        .args(["--json"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting aac-host")
}

fn mtime(path: &std::path::Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn signed_ms(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

/// One failover; returns (failover, overlap gap) in ms.
async fn failover(lease: &str) -> (f64, f64) {
    let manager = TestManager::start().await;
    let client = manager.client();
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&[SCRIPT]).await;
    let mut doomed = runner(
        &manager.url(),
        &[
            "--run-id",
            &run.id,
            "--runner-id",
            "doomed",
            "--lease",
            lease,
        ],
        root.path(),
        cache.path(),
    );
    wait_for_event(&client, &run.id, |e| is_line(e, "started")).await;
    // The standby starts once the doomed runner holds the run: started together, its claim-next
    // could take the run first, and there would be nothing to fail over.
    let mut standby = runner(
        &manager.url(),
        &[
            "--max-runs",
            "1",
            "--runner-id",
            "standby",
            "--lease",
            lease,
        ],
        root.path(),
        cache.path(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = SystemTime::now();
    doomed.kill().unwrap();
    doomed.wait().unwrap();

    let second = root
        .path()
        .join(&run.id)
        .join("attempt-2")
        .join("workspace");
    let give_up = std::time::Instant::now() + Duration::from_secs(300);
    while !second.join("started").exists() {
        assert!(
            std::time::Instant::now() < give_up,
            "no second attempt started within 5 min of the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_exec = mtime(&second.join("started"));
    let last_alive = mtime(&root.path().join(&run.id).join("workspace").join("alive"));
    let _ = Command::new("kill")
        .args(["-TERM", &standby.id().to_string()])
        .status();
    let _ = standby.wait();
    (
        signed_ms(first_exec, killed_at),
        signed_ms(first_exec, last_alive),
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| lease | failover (kill -9 → next attempt's first exec) | overlap gap (old turn's last sign of life → new first exec) |");
        println!("| --- | --- | --- |");
        for (lease, samples) in [("6s", 3), ("60s", 1)] {
            for _ in 0..samples {
                let (failover, gap) = failover(lease).await;
                println!("| {lease} | {failover:.0} ms | {gap:.0} ms |");
            }
        }
    });
}
