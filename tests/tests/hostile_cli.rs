//! Hostile plugins through the real `aac-host run` (real dockerd): a `start` that waits forever
//! ends at `call_wall` or on Ctrl-C leaving no container; a plugin holding processes is capped; an
//! oversized exec request is refused; plugin text reaches the terminal without control characters.

use std::time::Duration;

use aac_tests::child::wait;
use aac_tests::{aac_host_binary, containers_with_label, plugin};

fn write_config(dir: &std::path::Path, limits: &str) -> std::path::PathBuf {
    let config = dir.join("aac.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[limits]
{limits}

[runtimes.hostile]
plugin = "{plugin}"
default_version = "1"
versions."1".image = "aac/busybox:latest"
sandbox = {{ memory = "128MiB", pids = 48, network = "none" }}
pull_policy = "never"
"#,
            plugin = plugin("test-hostile").display(),
        ),
    )
    .unwrap();
    config
}

/// `aac-host run` of the hostile runtime in `config`, prompt `prompt`.
fn aac_host_run(
    config: &std::path::Path,
    runner_id: &str,
    backend_config: &str,
    prompt: &str,
    json: bool,
) -> std::process::Child {
    let mut command = std::process::Command::new(aac_host_binary());
    command.arg("run");
    if json {
        command.arg("--json");
    }
    command
        .args(["--runtime", "hostile", "--config"])
        .arg(config)
        .args([
            "--runner-id",
            runner_id,
            "--backend-config",
            backend_config,
            prompt,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting aac-host run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aac_host_run_ends_a_start_that_waits_forever_at_call_wall_and_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();

    // At the deadline: the turn fails with backend-timeout and the container is gone.
    let config = write_config(dir.path(), "call_wall = \"2s\"");
    let runner = format!("hostile-wait-{}", std::process::id());
    let child = aac_host_run(&config, &runner, r#"{"mode": "block-start"}"#, "ok 1", true);
    let (code, output) = wait(child).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("backend-timeout"), "{output}");
    assert!(
        output.contains("within its wall-clock deadline of 2s"),
        "{output}"
    );
    let label = format!("dev.aac-host.runner={runner}");
    assert!(containers_with_label(&label).await.is_empty(), "{output}");

    // On Ctrl-C (SIGINT) long before the deadline: cancelled (exit 130), no container left.
    let config = write_config(dir.path(), "call_wall = \"1h\"");
    let runner = format!("hostile-int-{}", std::process::id());
    let mut child = aac_host_run(&config, &runner, r#"{"mode": "block-start"}"#, "ok 1", true);
    let label = format!("dev.aac-host.runner={runner}");
    // Interrupt once the sandbox exists, i.e. while the plugin's `start` waits.
    while containers_with_label(&label).await.is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("aac-host ended before its sandbox started: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, output) = wait(child).await;
    assert_eq!(code, 130, "{output}");
    assert!(containers_with_label(&label).await.is_empty(), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_processes_are_capped_by_the_pids_budget_and_huge_execs_refused() {
    let dir = tempfile::tempdir().unwrap();
    // pids = 48: at most 16 processes held at once (16 pids stay free for docker exec; a held
    // process is two: the program and the wrapper shell that reports its exit).
    let config = write_config(dir.path(), "");
    let runner = format!("hostile-spawn-{}", std::process::id());
    let child = aac_host_run(&config, &runner, "{}", "spawn 60", true);
    let (code, output) = wait(child).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("the session already holds 16 processes, its limit")
            && output.contains("; refused: ExecError::SpawnFailed"),
        "{output}"
    );
    // Paced: 8 at once ([limits] process_start_burst), the other 8 at 4 per second (or slower:
    // past the burst they also take the host's slots, `paced_starts_share_the_hosts_slots`).
    let took_ms = start_time_ms(&output, 16);
    assert!(
        took_ms >= 1_900,
        "16 starts took only {took_ms} ms: {output}"
    );

    let runner = format!("hostile-argv-{}", std::process::id());
    let child = aac_host_run(&config, &runner, "{}", "huge-argv", true);
    let (code, output) = wait(child).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("refused: ExecError::InvalidRequest")
            && output.contains("over the limit of 1048576 bytes"),
        "{output}"
    );
    let label = format!("dev.aac-host.runner={runner}");
    assert!(containers_with_label(&label).await.is_empty(), "{output}");
}

/// `started N in T ms` of the spawn prompt's answer.
fn start_time_ms(output: &str, started: usize) -> u64 {
    output
        .split(&format!("started {started} in "))
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no `started {started} in N ms` in {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_starts_share_the_hosts_slots() {
    let dir = tempfile::tempdir().unwrap();
    // Past its one-start burst, the session's own pace allows a start a second (slower than an
    // exec takes, even on a loaded machine, so every later start is paced); the host's paced
    // starts get a slot every 4 s.
    let config = write_config(
        dir.path(),
        "process_start_burst = 1\nprocess_starts_per_second = 1\npaced_process_starts = 0.25",
    );
    let runner = format!("hostile-paced-{}", std::process::id());
    let child = aac_host_run(&config, &runner, "{}", "spawn 3", true);
    let (code, output) = wait(child).await;
    assert_eq!(code, 0, "{output}");
    // The second start waits for its own pace (≈ 1 s in), the third for the host's next slot, 4 s
    // after the second's: ≈ 5 s in all, where the session's pace alone makes it ≈ 2 s.
    let took_ms = start_time_ms(&output, 3);
    assert!(
        took_ms >= 4_500,
        "3 starts took only {took_ms} ms: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_text_reaches_the_terminal_without_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let runner = format!("hostile-esc-{}", std::process::id());
    let child = aac_host_run(&config, &runner, "{}", "escapes", false);
    let (code, output) = wait(child).await;
    assert_eq!(code, 1, "{output}");
    assert!(
        !output.contains('\u{1b}') && !output.contains('\u{7}'),
        "{output:?}"
    );
    assert!(
        output.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[31mred"),
        "the message is shown, escaped: {output}"
    );
    assert!(output.contains("plugin.invalid_event"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cwd_is_invalid_request_and_a_missing_program_spawn_failed_without_the_wrappers_files()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    for (prompt, answer, named) in [
        (
            "run-in /workspace no-such-program-aac",
            "refused: ExecError::SpawnFailed(",
            "no-such-program-aac",
        ),
        (
            "run-in /no/such/dir echo hi",
            "refused: ExecError::InvalidRequest(",
            "/no/such/dir",
        ),
    ] {
        let runner = format!("hostile-cwd-{}", std::process::id());
        let child = aac_host_run(&config, &runner, "{}", prompt, true);
        let (code, output) = wait(child).await;
        assert_eq!(code, 0, "{output}");
        assert!(!output.contains(".aac-exec-"), "{prompt}: {output}");
        assert!(output.contains(answer), "{prompt}: {output}");
        assert!(output.contains(named), "{prompt}: {output}");
    }
}
