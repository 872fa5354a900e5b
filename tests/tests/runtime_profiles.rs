//! `aac-host run --runtime` with an `aac.toml`: the profile chooses plugin, image and sandbox; its
//! secrets reach the sandbox's processes but are masked in every event; a wrong pin or an unknown
//! runtime is refused with a clear message.

use std::process::Output;

use aac_tests::{aac_host_binary, plugin};

async fn aac_host(args: &[&str], config: &std::path::Path) -> Output {
    tokio::process::Command::new(aac_host_binary())
        .args(["run", "--json", "--config"])
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap()
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let secret_file = dir.join("token");
    std::fs::write(&secret_file, "tok-3f9a8c1e77\n").unwrap();
    let config = dir.join("aac.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[runtimes.shell]
plugin = "{plugin}"
default_version = "1"
versions."1".image = "aac/busybox:latest"
sandbox = {{ memory = "256MiB", pids = 64, network = "none" }}
env = {{ GREETING = "hello" }}
secrets = {{ API_TOKEN = {{ file = "{secret}" }} }}
pull_policy = "never"
{extra}
"#,
            plugin = plugin("shell").display(),
            secret = secret_file.display(),
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_runs_with_its_env_and_masked_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let output = aac_host(
        &[
            "--runtime",
            "shell@1",
            "echo $GREETING; echo token=$API_TOKEN; echo length=${#API_TOKEN}",
        ],
        &config,
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#""text":"hello""#), "{stdout}");
    assert!(
        stdout.contains("length=14"),
        "the secret reaches the process: {stdout}"
    );
    assert!(stdout.contains("token=[redacted]"), "{stdout}");
    assert!(
        !stdout.contains("tok-3f9a8c1e77"),
        "a secret leaked into the events: {stdout}"
    );
}

#[tokio::test]
async fn an_unknown_runtime_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let output = aac_host(&["--runtime", "codex", "true"], &config).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("codex") && stderr.contains("shell"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_wrong_plugin_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("plugin_sha256 = \"{}\"", "0".repeat(64)),
    );
    let output = aac_host(&["--runtime", "shell", "true"], &config).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sha256"), "{stderr}");
}
