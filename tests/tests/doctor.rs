//! `aac-host doctor` through the binary against the real Docker engine and a real manager: a
//! profile whose image is missing is a `fail` naming the image, an unreachable manager a `fail`
//! naming its URL (exit 1); a healthy host with a running manager and its token passes (exit 0),
//! and a wrong token is a `fail`.

use std::path::Path;
use std::process::Output;

use aac_tests::runs::{TOKEN, TestManager};
use aac_tests::{aac_host_binary, plugin};

fn config(dir: &Path, image: &str) -> std::path::PathBuf {
    let file = dir.join("aac.toml");
    std::fs::write(
        &file,
        format!(
            "[runtimes.shell]\nplugin = {:?}\ndefault_version = \"v1\"\nversions.v1.image = \
             {image:?}\npull_policy = \"never\"\n",
            plugin("shell").display().to_string()
        ),
    )
    .unwrap();
    file
}

async fn doctor(dir: &Path, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(aac_host_binary());
    command
        .arg("doctor")
        .args(args)
        .env("AAC_CACHE_DIR", dir.join("cache"))
        .env_remove("AAC_MANAGER_TOKEN")
        .env_remove("AAC_MANAGER_URL")
        .env_remove("AAC_TOKEN_FILE");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn checks(output: &Output) -> Vec<serde_json::Value> {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["checks"].as_array().unwrap().clone()
}

fn find<'a>(checks: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    checks.iter().filter(|c| c["check"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_and_an_unreachable_manager_fail_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "aac/doctor-missing:0");
    let url = format!("http://127.0.0.1:{}", aac_tests::free_port());
    let out = doctor(
        dir.path(),
        &[
            "--json",
            "--config",
            file.to_str().unwrap(),
            "--manager-url",
            &url,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let checks = checks(&out);
    assert_eq!(find(&checks, "docker")[0]["status"], "ok", "{checks:#?}");
    let image = find(&checks, "image");
    assert_eq!(image.len(), 1, "{checks:#?}");
    assert_eq!(image[0]["status"], "fail");
    assert!(
        image[0]["detail"]
            .as_str()
            .unwrap()
            .contains("aac/doctor-missing:0"),
        "{image:?}"
    );
    assert!(image[0]["hint"].as_str().unwrap().contains("docker pull"));
    assert_eq!(find(&checks, "plugin")[0]["status"], "ok", "{checks:#?}");
    let manager = find(&checks, "manager");
    assert_eq!(manager[0]["status"], "fail");
    assert!(
        manager[0]["detail"].as_str().unwrap().contains(&url),
        "{manager:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_host_passes_and_a_wrong_token_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "aac/busybox:latest");
    let file = file.to_str().unwrap();
    let manager = TestManager::start().await;
    let url = manager.url();
    let out = doctor(
        dir.path(),
        &["--config", file, "--manager-url", &url, "--token", TOKEN],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "ok    docker:",
        "ok    image: shell@v1",
        "ok    plugin:",
        "ok    token:",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(!text.contains("fail "), "{text}");

    let out = doctor(
        dir.path(),
        &[
            "--json",
            "--config",
            file,
            "--manager-url",
            &url,
            "--token",
            "wrong",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let checks = checks(&out);
    let token = find(&checks, "token");
    assert_eq!(token[0]["status"], "fail", "{checks:#?}");
    assert!(
        token[0]["detail"]
            .as_str()
            .unwrap()
            .contains("refuses the token")
    );
}
