//! The Docker sandbox against a real dockerd: hardening seen from outside (inspect) and inside,
//! limits that hold, OOM and lost-container failure kinds, warm pools, and clean-up on every path
//! including a killed host.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aac_host::local::{DEFAULT_IMAGE, LocalTurn, sandbox_user};
use aac_host::outcome::{FailureKind, TerminalStatus};
use aac_host::sandbox::docker::labels;
use aac_host::sandbox::pool::WarmPool;
use aac_host::sandbox::{ResourceLimits, SandboxDriver, SandboxSpec};
use aac_tests::{
    aac_host_binary, containers_with_label, docker, local_turn, plugin, shell_turn, test_host,
};
use bollard::query_parameters::InspectContainerOptions;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        std::process::id() as u64 * 1000 + rand_suffix()
    )
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        % 1000
}

fn spec(workspace: PathBuf) -> SandboxSpec {
    let mut spec = SandboxSpec::new(DEFAULT_IMAGE, workspace, sandbox_user());
    spec.limits = ResourceLimits {
        cpus: Some(1.5),
        memory_bytes: Some(256 << 20),
        pids: Some(128),
    };
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_hardened_as_seen_from_outside() {
    let driver = docker().await.with_runner_id("test-hardening");
    let workspace = tempfile::tempdir().unwrap();
    aac_host::sandbox::pool::prepare_workspace(workspace.path(), &sandbox_user()).unwrap();
    let sandbox = driver
        .open(&spec(workspace.path().to_path_buf()))
        .await
        .unwrap();
    let inspect = driver
        .client()
        .inspect_container(sandbox.id(), None::<InspectContainerOptions>)
        .await
        .unwrap();
    sandbox.remove().await.unwrap();

    let host = inspect.host_config.unwrap();
    assert_eq!(host.cap_drop.unwrap(), ["ALL"]);
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(host.security_opt.unwrap(), ["no-new-privileges"]);
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.pids_limit, Some(128));
    assert_eq!(host.memory, Some(256 << 20));
    assert_eq!(
        host.memory_swap,
        Some(256 << 20),
        "no swap beyond the memory limit"
    );
    assert_eq!(host.nano_cpus, Some(1_500_000_000));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let tmpfs = host.tmpfs.unwrap();
    assert!(
        tmpfs.contains_key("/tmp") && tmpfs.contains_key("/home/aac"),
        "{tmpfs:?}"
    );
    let binds = host.binds.unwrap();
    assert_eq!(binds.len(), 1, "only the workspace is mounted: {binds:?}");
    assert!(binds[0].ends_with(":/workspace"));
    assert!(!binds.iter().any(|b| b.contains("docker.sock")));

    let config = inspect.config.unwrap();
    assert!(
        !config.user.as_deref().unwrap().starts_with("0"),
        "{:?}",
        config.user
    );
    let container_labels = config.labels.unwrap();
    for key in [
        labels::MANAGED,
        labels::RUNNER,
        labels::OWNER,
        labels::EXPIRES,
    ] {
        assert!(
            container_labels.contains_key(key),
            "label {key} missing: {container_labels:?}"
        );
    }
    assert_eq!(container_labels[labels::RUNNER], "test-hardening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_hardened_as_seen_from_inside() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let script = "id -u; grep CapEff /proc/self/status; \
                  touch /root-is-writable 2>/dev/null && echo root-writable || echo root-read-only; \
                  touch $HOME/ok && echo home-writable; \
                  cat /proc/1/cmdline | tr '\\0' ' '; echo; \
                  ls /var/run/docker.sock 2>/dev/null || echo no-docker-sock";
    let record = shell_turn(
        &host,
        workspace.path(),
        script,
        json!({}),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}",
        record.events
    );
    let out = record.lines("stdout");
    assert_ne!(out[0], "0", "processes must not run as root");
    assert_eq!(
        out[1].split_whitespace().last(),
        Some("0000000000000000"),
        "no capabilities"
    );
    assert_eq!(out[2], "root-read-only");
    assert_eq!(out[3], "home-writable");
    assert!(out[4].contains("init"), "PID 1 is an init: {}", out[4]);
    assert_eq!(out[5], "no-docker-sock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pids_limit_holds_against_a_fork_loop() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        limits: ResourceLimits {
            pids: Some(48),
            ..ResourceLimits::default()
        },
        config_json: json!({ "timeout_ms": 20000 }).to_string(),
        ..LocalTurn::new(
            plugin("shell"),
            // The loop runs in a subshell, which dies when fork fails; then only builtins, since
            // nothing can fork once the limit is full.
            "(i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; \
             n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n",
        )
    };
    let record = local_turn(&host, turn, CancellationToken::new()).await;
    let counted: usize = record.lines("stdout").last().unwrap().parse().unwrap();
    assert!(counted <= 48, "{counted} processes ran under a limit of 48");
    assert!(
        counted >= 20,
        "the loop should have filled the limit, saw {counted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_over_the_memory_limit_is_an_oom_failure() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let turn = LocalTurn {
        workspace: Some(workspace.path().to_path_buf()),
        limits: ResourceLimits {
            memory_bytes: Some(64 << 20),
            ..ResourceLimits::default()
        },
        ..LocalTurn::new(
            plugin("shell"),
            "dd if=/dev/zero of=/dev/null bs=200M count=1",
        )
    };
    let record = local_turn(&host, turn, CancellationToken::new()).await;
    let outcome = &record.report.outcome;
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::OomKilled),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_dying_mid_turn_is_sandbox_lost() {
    let host = test_host(None);
    let driver = docker().await;
    let workspace = tempfile::tempdir().unwrap();
    let turn = tokio::spawn({
        let host = host.clone();
        let workspace = workspace.path().to_path_buf();
        async move {
            shell_turn(
                &host,
                &workspace,
                "echo up; sleep 60",
                json!({}),
                CancellationToken::new(),
            )
            .await
        }
    });
    // Find the turn's container once it runs, and kill it from outside.
    let mut victim = None;
    for _ in 0..100 {
        let running = containers_with_label(labels::RUN).await;
        for id in running {
            let inspect = driver
                .client()
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await;
            let Ok(inspect) = inspect else { continue };
            let binds = inspect
                .host_config
                .and_then(|h| h.binds)
                .unwrap_or_default();
            if binds.iter().any(|b| {
                b.starts_with(
                    &workspace
                        .path()
                        .canonicalize()
                        .unwrap()
                        .display()
                        .to_string(),
                )
            }) {
                victim = Some(id);
            }
        }
        if victim.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let victim = victim.expect("the turn's container appeared");
    tokio::time::sleep(Duration::from_millis(500)).await;
    driver
        .client()
        .kill_container(
            &victim,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let record = turn.await.unwrap();
    let outcome = &record.report.outcome;
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::SandboxLost),
        "{outcome:?}"
    );
    assert_eq!(aac_tests::containers_of_run(&record.report.run_id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_pool_hands_out_ready_containers_refills_and_falls_back_to_cold() {
    let runner = unique("test-pool");
    let driver: Arc<dyn SandboxDriver> = Arc::new(docker().await.with_runner_id(runner.clone()));
    let root = tempfile::tempdir().unwrap();
    let pool = WarmPool::start(driver, spec(PathBuf::new()), root.path().to_path_buf(), 2);
    tokio::time::timeout(Duration::from_secs(60), pool.wait_full())
        .await
        .expect("the pool fills");
    assert_eq!(pool.ready_count(), 2);

    let first = pool.acquire().await.unwrap();
    let second = pool.acquire().await.unwrap();
    let third = pool.acquire().await.unwrap();
    assert!(
        first.warm && second.warm,
        "the first two come from the pool"
    );
    assert!(
        !third.warm,
        "an exhausted pool falls back to a cold start at once"
    );
    for pooled in [&first, &second, &third] {
        assert!(pooled.sandbox.is_alive().await.unwrap());
        assert!(pooled.workspace.starts_with(root.path()));
    }

    tokio::time::timeout(Duration::from_secs(60), pool.wait_full())
        .await
        .expect("the pool refills");
    assert_eq!(pool.ready_count(), 2);

    for pooled in [first, second, third] {
        pooled.sandbox.remove().await.unwrap();
    }
    pool.shutdown().await;
    let left = containers_with_label(&format!("{}={runner}", labels::RUNNER)).await;
    assert!(left.is_empty(), "containers left after shutdown: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_container_is_left_after_a_failed_turn() {
    let host = test_host(None);
    let workspace = tempfile::tempdir().unwrap();
    let record = shell_turn(
        &host,
        workspace.path(),
        "exit 7",
        json!({}),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(record.report.outcome.status, TerminalStatus::Failed);
    assert_eq!(aac_tests::containers_of_run(&record.report.run_id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_leaves_orphans_that_the_next_start_removes() {
    let runner = unique("test-crash");
    let driver = docker().await.with_runner_id(runner.clone());
    let workspace = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(aac_host_binary())
        .args(["run", "--runner-id", &runner, "--plugin"])
        .arg(plugin("shell"))
        .arg("--workspace")
        .arg(workspace.path())
        .arg("echo running; sleep 120")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let label = format!("{}={runner}", labels::RUNNER);
    let mut seen = Vec::new();
    for _ in 0..300 {
        seen = containers_with_label(&label).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!seen.is_empty(), "the host never created its container");
    // Our own child, by its PID: the host dies without cleaning up.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_eq!(
        containers_with_label(&label).await.len(),
        1,
        "the orphan is still there"
    );

    // An orphan stuck in Created, as a crash between create and start leaves one.
    let dead_owner = format!("{}:{}", "another-boot", 1);
    let created = driver
        .client()
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(DEFAULT_IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                labels: Some(HashMap::from([
                    (labels::MANAGED.to_string(), "true".to_string()),
                    (labels::RUNNER.to_string(), runner.clone()),
                    (labels::OWNER.to_string(), dead_owner),
                ])),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let removed = driver.reap_orphans(&runner).await.unwrap();
    assert_eq!(removed, 2);
    assert!(containers_with_label(&label).await.is_empty());
    let gone = driver
        .client()
        .inspect_container(&created.id, None::<InspectContainerOptions>)
        .await;
    assert!(gone.is_err(), "the Created orphan was removed");
}

#[tokio::test]
async fn an_unreachable_daemon_gets_a_clear_error() {
    let output = tokio::process::Command::new(aac_host_binary())
        .args(["run", "--plugin"])
        .arg(plugin("shell"))
        .arg("true")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "the Docker engine at unix:///nonexistent/docker.sock (DOCKER_HOST) does not answer"
        ),
        "names the address and where it came from: {stderr}"
    );
}
