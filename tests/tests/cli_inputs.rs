//! Limits and paths from the command line, through the real binary: a flag never removes a limit,
//! bad values are exit 2 naming the flag before any container exists, relative paths are resolved,
//! a pre-filled workspace is the agent's to change, and pool mode says what it could not do.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};

use aac_host::manager::protocol::CreateRun;
use aac_tests::runs::{TOKEN, TestManager};
use aac_tests::{aac_host_binary, containers_with_label, plugin};

fn aac_host(cache: &std::path::Path) -> Command {
    let mut command = Command::new(aac_host_binary());
    command.env("AAC_CACHE_DIR", cache);
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limits_and_a_file_as_workspace_are_usage_errors_before_any_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_str().unwrap().to_string();
    let cases: [(&[&str], &str); 7] = [
        (&["--memory-mib", "0"], "--memory-mib"),
        (&["--memory-mib", "4"], "Docker's minimum"),
        (&["--cpus", "0"], "--cpus"),
        (&["--cpus", "lots"], "not a number of CPUs"),
        (&["--pids", "-1"], "--pids"),
        (&["--memory-mib", "2GiB"], "not a whole number of MiB"),
        (&["--workspace", &file], "is not a directory"),
    ];
    for (flags, expected) in cases {
        let output = aac_host(dir.path())
            .arg("run")
            .arg("--plugin")
            .arg(plugin("shell"))
            .args(["--runner-id", "cli-inputs-bad"])
            .args(flags)
            .arg("echo never")
            .output()
            .unwrap();
        let all = text(&output);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {all}");
        assert!(
            all.contains(expected),
            "{flags:?}: expected {expected:?} in {all}"
        );
    }
    assert!(
        containers_with_label("dev.aac-host.runner=cli-inputs-bad")
            .await
            .is_empty()
    );
}

#[test]
fn a_relative_workspace_is_resolved_against_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let output = aac_host(&dir.path().join("cache"))
        .current_dir(dir.path())
        .arg("run")
        .arg("--plugin")
        .arg(plugin("shell"))
        .args(["--workspace", "rel/ws", "echo made-here > out.txt"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let written = std::fs::read_to_string(dir.path().join("rel/ws/out.txt")).unwrap();
    assert_eq!(written.trim(), "made-here");
}

#[test]
fn run_as_root_the_agent_may_change_every_file_of_a_prefilled_workspace() {
    if !std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0) {
        eprintln!("not root: the ownership rule applies to root only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("src/deep")).unwrap();
    std::fs::write(ws.join("README"), "one\n").unwrap();
    std::fs::write(ws.join("src/deep/lib.rs"), "two\n").unwrap();
    std::fs::set_permissions(ws.join("src"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = aac_host(&dir.path().join("cache"))
        .arg("run")
        .arg("--plugin")
        .arg(plugin("shell"))
        .arg("--workspace")
        .arg(&ws)
        .arg("echo more >> README && echo more >> src/deep/lib.rs && touch src/deep/new && rm src/deep/lib.rs && echo back > src/deep/lib.rs")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(ws.join("README")).unwrap(),
        "one\nmore\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("src/deep/lib.rs")).unwrap(),
        "back\n"
    );
    let owner = std::fs::metadata(ws.join("src/deep")).unwrap().uid();
    assert_eq!(owner, 1000, "the workspace was given to the sandbox user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_exits_non_zero_when_it_could_not_work_on_its_runs() {
    let manager = TestManager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run = manager.shell_run(&["echo never"]).await;
    let output = aac_host(dir.path())
        .current_dir(dir.path())
        .arg("--plugin")
        .arg(plugin("shell"))
        .args(["--image", "aac/no-such-image:0"])
        .args([
            "--manager-url",
            &manager.url(),
            "--max-runs",
            "1",
            "--one-shot",
        ])
        .args([
            "--workspace-root",
            "relative-root",
            "--runner-id",
            "cli-inputs-pool",
        ])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .output()
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("image-unavailable"), "{all}");
    assert!(all.contains("could not be worked on"), "{all}");
    let stored = manager.client().get_run(&run.id).await.unwrap();
    assert!(stored.status.is_terminal(), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_names_the_queued_backends_it_cannot_serve() {
    let manager = TestManager::start().await;
    let client = manager.client();
    let dir = tempfile::tempdir().unwrap();
    for backend in ["gemini", "gemini", "codex@0.170"] {
        client
            .create_run(CreateRun {
                id: None,
                backend: backend.into(),
                bundle: None,
                config: serde_json::json!({}),
                max_attempts: None,
                require_labels: Default::default(),
            })
            .await
            .unwrap();
    }
    let config = dir.path().join("aac.toml");
    std::fs::write(
        &config,
        format!(
            "[runtimes.shell]\nplugin = \"{}\"\ndefault_version = \"1\"\nversions.\"1\".image = \"aac/busybox:latest\"\n",
            plugin("shell").display()
        ),
    )
    .unwrap();
    let output = aac_host(dir.path())
        .arg("--config")
        .arg(&config)
        .args([
            "--manager-url",
            &manager.url(),
            "--max-runs",
            "2",
            "--one-shot",
        ])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_LOG", "warn")
        .output()
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(
        all.contains("codex@0.170 (1 run), gemini (2 runs)"),
        "names each backend with its count: {all}"
    );
    assert!(all.contains("no runtime for"), "{all}");
}

#[test]
fn docker_host_is_honoured_like_the_docker_cli() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut command = aac_host(dir.path());
        command
            .arg("run")
            .arg("--plugin")
            .arg(plugin("shell"))
            .arg("echo via-docker-host")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        (output.status.code(), text(&output))
    };
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| host.starts_with("unix://"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let (code, out) = run(&[("DOCKER_HOST", &socket)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("via-docker-host"), "{out}");

    let (code, out) = run(&[("DOCKER_HOST", "tcp://127.0.0.1:1")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("tcp://127.0.0.1:1 (DOCKER_HOST) does not answer"),
        "{out}"
    );

    let certs = dir.path().join("no-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (code, out) = run(&[
        ("DOCKER_HOST", "tcp://127.0.0.1:1"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.to_str().unwrap()),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("ca.pem is missing"), "{out}");

    let (code, out) = run(&[("DOCKER_HOST", "ftp://example")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("DOCKER_HOST `ftp://example`"), "{out}");
}
