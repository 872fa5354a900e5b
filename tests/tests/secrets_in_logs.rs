//! A secret's value never reaches a log line at any level, nor any output of the real binary: the
//! Docker client's debug/trace lines print the container-create body with its `Env`.

use std::process::Command;

use aac_tests::{aac_host_binary, plugin};

const FROM_ENV: &str = "sk-env-7f3a9c1e5b2d4680";
const FROM_FILE: &str = "ghp-file-0d9e8c7b6a5f4e3d";

#[test]
fn secrets_from_env_and_file_never_reach_any_output_at_trace_level() {
    let stderr = run_at_trace("text");
    assert!(!stderr.contains('\u{1b}'), "no ANSI codes when piped");
}

/// JSON lines carry span fields (run, attempt, command): a secret must not hide there either.
#[test]
fn secrets_never_reach_json_log_lines_at_trace_level() {
    let stderr = run_at_trace("json");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(lines.len() > 20, "{stderr}");
    let in_command = lines
        .iter()
        .find(|line| {
            let names: Vec<_> = line["spans"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|span| span["name"].as_str())
                .collect();
            names.contains(&"run") && names.contains(&"command")
        })
        .unwrap_or_else(|| panic!("no line inside a run's command span:\n{stderr}"));
    let spans = in_command["spans"].as_array().unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s["run"].is_string() && s["attempt"].is_string())
    );
    assert!(spans.iter().any(|s| s["command"].is_string()));
}

/// Runs a turn whose sandbox has two secrets with `AAC_LOG=trace` in `format`; checks that no
/// output holds either, and returns stderr.
fn run_at_trace(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token.txt"), format!("{FROM_FILE}\n")).unwrap();
    let config = dir.path().join("aac.toml");
    std::fs::write(
        &config,
        format!(
            r#"[runtimes.secretive]
plugin = "{}"
default_version = "1"
versions."1".image = "aac/busybox:latest"
secrets = {{ API_KEY = {{ env = "AAC_TEST_API_KEY" }}, GH_TOKEN = {{ file = "token.txt" }} }}
"#,
            plugin("shell").display()
        ),
    )
    .unwrap();
    let output = Command::new(aac_host_binary())
        .arg("run")
        .args(["--config"])
        .arg(&config)
        .args(["--runtime", "secretive", "--workspace"])
        .arg(dir.path().join("ws"))
        // The sandbox has them: prove it without printing them.
        .arg(r#"[ "${#API_KEY}" = 23 ] && [ "${#GH_TOKEN}" = 25 ] && echo both-secrets-present; echo "$API_KEY $GH_TOKEN"; env"#)
        .env("AAC_LOG", "trace")
        .env("AAC_LOG_FORMAT", format)
        .env("AAC_TEST_API_KEY", FROM_ENV)
        .env("AAC_CACHE_DIR", dir.path().join("cache"))
        .output()
        .expect("running aac-host");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("both-secrets-present"), "{stdout}");
    // Trace logging was on: the run's own debug lines are there.
    assert!(stderr.lines().count() > 20, "{stderr}");
    for secret in [FROM_ENV, FROM_FILE] {
        assert!(!stdout.contains(secret), "secret in stdout:\n{stdout}");
        let leaked: Vec<&str> = stderr
            .lines()
            .filter(|line| line.contains(secret))
            .collect();
        assert!(leaked.is_empty(), "secret in log lines: {leaked:#?}");
    }
    stderr.into_owned()
}
