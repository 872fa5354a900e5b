//! Results round trip with the real Codex CLI (issue 14 § Tests), across processes: a manager
//! process; `aac-host runs create codex@0.169 --bundle <git repo>` from the CLI; a runner process
//! with an `aac.toml` whose `codex` runtime runs the real Codex 0.169.0 image against the mock
//! Responses API; the mock makes Codex's shell tool edit a file, add one, delete one and write a
//! binary one. `runs diff` applied with `git apply` to a fresh clone gives the runner's tree, and
//! `runs files --out` gives the changed files themselves.

use std::path::Path;

use aac_host::manager::protocol::RunStatus;
use aac_tests::mock_openai;
use aac_tests::plugin;
use aac_tests::results_env::{ManagerProcess, applied_to_fresh_clone, git, run_id, tree};

const IMAGE: &str = "aac/codex:0.169.0";

/// A runner config with one runtime, `codex@0.169` (bridge network: the mock listens on the
/// Docker bridge), and the bundle materializer.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("aac.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[runtimes.codex]
plugin = "{codex}"
default_version = "0.169"
versions."0.169".image = "{IMAGE}"
sandbox = {{ memory = "2GiB", pids = 256, network = "bridge" }}
pull_policy = "never"

[bundles]
plugin = "{bundle}"
"#,
            codex = plugin("codex").display(),
            bundle = plugin("bundle").display(),
        ),
    )
    .unwrap();
    config
}

/// The change Codex makes through its shell tool: one edit, one new file, one deletion, one
/// binary file.
const EDIT: &str = "printf 'fn main() {\\n    println!(\"hello, codex\");\\n}\\n' > src/main.rs && \
    printf 'added by codex\\n' > NOTES.md && rm obsolete.txt && \
    printf 'PNG\\000\\001\\002\\377\\376' > logo.bin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_turn_comes_back_as_a_diff_that_git_applies_to_a_fresh_clone() {
    let mock = mock_openai::start().await;
    mock.push(mock_openai::shell_call("call_1", EDIT));
    mock.push(mock_openai::text("edited main.rs, added NOTES.md"));

    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("src/main.rs"),
        "fn main() {\n    println!(\"hello\");\n}\n",
    )
    .unwrap();
    std::fs::write(repo.join("obsolete.txt"), "remove me\n").unwrap();
    std::fs::write(repo.join("Cargo.toml"), "[package]\nname = \"demo\"\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);

    let backend_config = mock_openai::codex_config(&mock).to_string();
    let run = run_id(&manager.cli_ok(&[
        "create",
        "codex@0.169",
        "--bundle",
        repo.to_str().unwrap(),
        "--backend-config",
        &backend_config,
    ]));
    manager.cli_ok(&["enqueue", &run, "make main.rs greet codex and add notes"]);

    let config = write_config(tmp.path());
    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let mut runner = manager.runner_command(&run, &root);
    runner
        .arg("--config")
        .arg(&config)
        .args(["--one-shot", "--keep-workspaces"]);
    let (code, output) = aac_tests::child::wait(runner.spawn().unwrap()).await;
    assert_eq!(code, 0, "{output}");
    let shown = manager.client().get_run(&run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Completed, "{shown:?}\n{output}");
    assert_eq!(
        mock.model_requests().len(),
        2,
        "a tool call, then the answer"
    );
    let workspace = root.join(&run).join("workspace");
    assert_eq!(
        std::fs::read_to_string(workspace.join("NOTES.md")).unwrap(),
        "added by codex\n",
        "Codex's shell tool ran in the bundle's workspace"
    );

    let results: serde_json::Value =
        serde_json::from_slice(&manager.cli_ok(&["results", &run])).unwrap();
    let result = &results[0];
    assert_eq!(result["added"], 2, "{result}");
    assert_eq!(result["modified"], 1, "{result}");
    assert_eq!(result["deleted"], 1, "{result}");

    let diff = manager.cli_ok(&["diff", &run]);
    let text = String::from_utf8_lossy(&diff);
    assert!(text.contains("+    println!(\"hello, codex\");"), "{text}");
    assert!(text.contains("deleted file mode 100644"), "{text}");
    assert!(text.contains("GIT binary patch"), "{text}");
    let fresh = applied_to_fresh_clone(&repo, &diff, tmp.path());
    let applied = tree(&fresh);
    assert_eq!(applied, tree(&workspace));
    assert!(!applied.contains_key("obsolete.txt"));
    assert_eq!(applied["logo.bin"].0, b"PNG\x00\x01\x02\xff\xfe");

    // The changed files themselves: exactly what the diff adds or modifies, same bytes.
    let out = tmp.path().join("out");
    manager.cli_ok(&["files", &run, "--out", out.to_str().unwrap()]);
    let files = tree(&out);
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        ["NOTES.md", "logo.bin", "src/main.rs"]
    );
    for (path, content) in &files {
        assert_eq!(content, &applied[path], "{path}");
    }
}
