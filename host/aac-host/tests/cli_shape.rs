//! The command line's shape: `aac-host runner` is the runner's subcommand (the bare form still
//! works and warns), `--manager-url` and `--token-file` are accepted before or after any
//! subcommand, and a runner flag before another subcommand is refused rather than ignored.

use std::process::Stdio;
use std::time::Duration;

fn aac_host(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(args)
        .env_remove("AAC_MANAGER_URL")
        .env_remove("AAC_MANAGER_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test]
async fn manager_url_and_token_file_are_accepted_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "shape-token\n").unwrap();
    let token_file = token_file.to_str().unwrap().to_owned();
    let port = aac_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = dir.path().join("m.redb");
    // The manager takes --token-file after its subcommand too.
    let mut manager = tokio::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .args(["--token-file", &token_file])
        .env_remove("AAC_MANAGER_TOKEN")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if reqwest::get(format!("{url}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for args in [
        vec![
            "runs",
            "list",
            "--manager-url",
            &url,
            "--token-file",
            &token_file,
        ],
        vec![
            "--manager-url",
            &url,
            "runs",
            "list",
            "--token-file",
            &token_file,
        ],
        vec![
            "runners",
            "list",
            "--token-file",
            &token_file,
            "--manager-url",
            &url,
        ],
    ] {
        let output = aac_host(&args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(
            listed.is_array() || listed["runners"].is_array(),
            "{listed}"
        );
    }

    // A prompt of `-` is read from stdin.
    let created = aac_host(&[
        "runs",
        "create",
        "shell",
        "--manager-url",
        &url,
        "--token-file",
        &token_file,
    ]);
    let run: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let run_id = run["id"].as_str().unwrap();
    let mut enqueue = std::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args([
            "runs",
            "enqueue",
            run_id,
            "-",
            "--manager-url",
            &url,
            "--token-file",
            &token_file,
        ])
        .env_remove("AAC_MANAGER_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = enqueue.stdin.take().unwrap();
        stdin.write_all(b"echo \"from stdin\"\nls\n").unwrap();
    }
    let output = enqueue.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let command: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        command["prompt"], "echo \"from stdin\"\nls",
        "one trailing newline dropped"
    );
    manager.start_kill().unwrap();
    manager.wait().await.unwrap();
}

#[test]
fn version_names_the_wit_package_wasmtime_and_the_commit() {
    let output = aac_host(&["--version"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with(&format!("aac-host {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains("\nwit: aac:plugin@0.2.1 (also loads 0.2.0, 0.1.0)\n"),
        "{text}"
    );
    let wasmtime = text
        .lines()
        .find_map(|l| l.strip_prefix("wasmtime: "))
        .unwrap();
    assert!(wasmtime.starts_with(|c: char| c.is_ascii_digit()), "{text}");
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap();
    assert!(!commit.is_empty(), "{text}");
}

#[test]
fn a_runner_flag_before_another_subcommand_is_refused() {
    let output = aac_host(&["--plugin", "x.wasm", "run", "true"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--plugin is a runner flag and goes after `aac-host runner`"),
        "{stderr}"
    );
}

#[test]
fn the_bare_runner_form_still_works_but_warns_and_the_subcommand_does_not() {
    let common = [
        "--manager-url",
        "http://127.0.0.1:9",
        "--run-id",
        "r1",
        "--plugin",
        "/nonexistent/plugin.wasm",
    ];
    let bare = aac_host(&common);
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains("deprecated: use `aac-host runner"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/nonexistent/plugin.wasm"),
        "it went on as the runner: {stderr}"
    );
    let mut args = vec!["runner"];
    args.extend(common);
    let explicit = aac_host(&args);
    let stderr = String::from_utf8_lossy(&explicit.stderr);
    assert!(!stderr.contains("deprecated"), "{stderr}");
    assert!(stderr.contains("/nonexistent/plugin.wasm"), "{stderr}");
    assert_eq!(explicit.status.code(), bare.status.code());
}

#[test]
fn completions_are_printed_for_each_shell_and_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = aac_host(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["runner", "runners", "manager-url", "log-format"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = aac_host(&["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2));
}
