//! Results leave the runner (issue 14), across real processes: a manager process, the `aac-host`
//! CLI, and a runner process working in Docker with the shell plugin. A git repository goes in
//! with `runs create --bundle`, a turn edits, adds, deletes, chmods and writes binary, and
//! `runs diff` applied with `git apply` to a fresh clone gives the runner's tree back.

use std::process::{Command, Stdio};
use std::time::Duration;

use aac_host::manager::protocol::RunStatus;
use aac_tests::aac_host_binary;
use aac_tests::child::{signal, wait};
use aac_tests::plugin;
use aac_tests::results_env::{ManagerProcess, applied_to_fresh_clone, repo, run_id, tree};

const TURN: &str = "echo 'line three' >> README.md; echo new > added.txt; rm old.txt; \
    chmod +x script.sh; printf 'bin\\000\\001\\002\\377' > data.bin; \
    mkdir -p deep/dir && echo deep > deep/dir/f.txt; git status --short >/dev/null 2>&1; true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundled_git_repo_comes_back_as_a_diff_that_git_applies() {
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", repo.to_str().unwrap()]));
    let shown = manager.client().get_run(&run).await.unwrap();
    let bundle = shown.bundle.expect("the run names its bundle");
    assert_eq!(bundle.kind, "blob");
    assert_eq!(
        bundle.location,
        format!("/v1/blobs/{}", bundle.sha256.unwrap())
    );
    manager.cli_ok(&["enqueue", &run, TURN]);
    // A second command that changes nothing: an empty diff, and the same run diff (not sent again).
    manager.cli_ok(&["enqueue", &run, "true"]);

    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let (code, output) = manager
        .run_runner(&run, &root, &["--keep-workspaces"])
        .await;
    assert_eq!(code, 0, "{output}");
    let shown = manager.client().get_run(&run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Completed, "{shown:?}");
    let workspace = root.join(&run).join("workspace");
    assert!(
        workspace.join(".git").is_dir(),
        "the bundle carries the repository"
    );
    assert!(
        !workspace.join("target").exists(),
        ".gitignore'd files stay out of the bundle"
    );

    let results: serde_json::Value =
        serde_json::from_slice(&manager.cli_ok(&["results", &run])).unwrap();
    let result = &results[0];
    assert_eq!(result["added"], 3, "{result} {output}");
    assert_eq!(result["modified"], 2, "{result}");
    assert_eq!(result["deleted"], 1, "{result}");
    assert!(result.get("truncated").is_none(), "{result}");

    // The diff applies to a fresh clone and gives the runner's tree, modes included.
    let diff = manager.cli_ok(&["diff", &run]);
    let text = String::from_utf8_lossy(&diff);
    assert!(
        text.contains("diff --git a/README.md b/README.md"),
        "{text}"
    );
    assert!(text.contains("deleted file mode 100644"), "{text}");
    assert!(text.contains("new file mode 100644"), "{text}");
    assert!(text.contains("old mode 100644\nnew mode 100755"), "{text}");
    assert!(text.contains("GIT binary patch"), "{text}");
    assert!(
        !text.contains("a/.git/"),
        ".git internals are not changes: {text}"
    );
    let fresh = applied_to_fresh_clone(&repo, &diff, tmp.path());
    assert_eq!(tree(&fresh), tree(&workspace));

    // The first command's diff is the run's: the second changed nothing.
    let command = result["command_id"].as_str().unwrap();
    assert_eq!(manager.cli_ok(&["diff", &run, "--command", command]), diff);
    let second = &results[1];
    assert_eq!(
        (&second["added"], &second["modified"], &second["deleted"]),
        (&0.into(), &0.into(), &0.into()),
        "{second}"
    );
    assert_eq!(second["diff_bytes"], 0, "{second}");
    assert_eq!(
        second["run_diff_sha256"], result["run_diff_sha256"],
        "{second}"
    );
    assert_eq!(
        second["run_diff_bytes"], result["run_diff_bytes"],
        "{second}"
    );
    let second_command = second["command_id"].as_str().unwrap();
    assert!(
        manager
            .cli_ok(&["diff", &run, "--command", second_command])
            .is_empty()
    );

    // The changed files themselves.
    let out = tmp.path().join("out");
    manager.cli_ok(&["files", &run, "--out", out.to_str().unwrap()]);
    let files = tree(&out);
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        [
            "README.md",
            "added.txt",
            "data.bin",
            "deep/dir/f.txt",
            "script.sh"
        ]
    );
    assert_eq!(files["data.bin"].0, b"bin\x00\x01\x02\xff");
    assert!(files["script.sh"].1, "the mode comes back");
    assert_eq!(files["README.md"], tree(&workspace)["README.md"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_past_its_limit_is_marked_and_the_run_still_completes() {
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", repo.to_str().unwrap()]));
    manager.cli_ok(&[
        "enqueue",
        &run,
        "head -c 5000 /dev/zero | tr '\\0' x > big.txt",
    ]);
    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let (code, output) = manager
        .run_runner(&run, &root, &["--result-bytes", "1000"])
        .await;
    assert_eq!(code, 0, "{output}");
    let client = manager.client();
    assert_eq!(
        client.get_run(&run).await.unwrap().status,
        RunStatus::Completed
    );
    let results = client.results(&run).await.unwrap();
    assert!(results[0].truncated, "{results:?}");
    assert!(
        results[0]
            .truncated_reason
            .as_deref()
            .unwrap()
            .contains("limit of 1000 bytes")
    );
    let events = client.events(&run, 0).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "result.truncated"),
        "a result.truncated event: {events:?}"
    );
    let diff = manager.cli(&["diff", &run]);
    assert!(!diff.status.success());
    assert!(
        String::from_utf8_lossy(&diff.stderr).contains("limit"),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    // Without --keep-workspaces the finished run's directory is gone.
    assert!(!root.join(&run).exists(), "the workspace was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_over_the_managers_limit_creates_no_run() {
    let manager = ManagerProcess::start(&["--max-blob-bytes", "4KiB"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big.txt"), vec![b'x'; 10_000]).unwrap();
    let out = manager.cli(&["create", "shell", "--bundle", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("blob limit of 4096 bytes"), "{stderr}");
    assert!(stderr.contains("no run was created"), "{stderr}");
    assert!(manager.client().list_runs(None).await.unwrap().is_empty());
    let out = manager.cli(&["create", "shell", "--bundle", "/nonexistent/dir"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir"));
}

/// A runner (workspaces kept, below `root`) works on `run`, whose bundle must be refused: the
/// runner exits non-zero and the run failed as `resource-bundle`.
async fn refused_bundle_run(
    manager: &ManagerProcess,
    run: &str,
    root: &std::path::Path,
) -> aac_host::manager::protocol::Run {
    std::fs::create_dir_all(root).unwrap();
    let (code, output) = manager.run_runner(run, root, &["--keep-workspaces"]).await;
    assert_ne!(code, 0, "{output}");
    let shown = manager.client().get_run(run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Failed, "{shown:?}");
    assert_eq!(
        shown.failure_kind,
        Some(aac_host::outcome::FailureKind::ResourceBundle)
    );
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_bundle_uploaded_from_the_cli_is_still_refused() {
    use aac_tests::bundle::{Entry, archive, manifest_for};
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let entries = [Entry::file("../escape.txt", "out of the workspace\n")];
    let tar = tmp.path().join("hostile.tar");
    std::fs::write(&tar, archive(&manifest_for(&entries), &entries)).unwrap();
    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", tar.to_str().unwrap()]));
    manager.cli_ok(&["enqueue", &run, "echo should not run"]);
    let root = tmp.path().join("runs");
    refused_bundle_run(&manager, &run, &root).await;
    assert!(!root.join(&run).join("escape.txt").exists());
    assert!(!tmp.path().join("escape.txt").exists());
}

/// The runner materializes a bundle as it downloads it: bytes that differ from the hash the run
/// pins are found only at the end, and then nothing of what was unpacked reaches the workspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_changed_in_the_store_lands_nothing() {
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    // Several MiB, so the materializer starts before the download ends.
    for name in ["a.bin", "b.bin", "c.bin", "d.bin"] {
        std::fs::write(dir.join(name), vec![name.as_bytes()[0]; 1 << 20]).unwrap();
    }
    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", dir.to_str().unwrap()]));
    let bundle = manager.bundle_of(&run).await;
    let blob = manager.blob_path(bundle.sha256.as_deref().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    aac_tests::bundle::damage_contents(&mut bytes, b'c');
    std::fs::write(&blob, &bytes).unwrap();
    manager.cli_ok(&["enqueue", &run, "echo should not run > ran.txt"]);
    let root = tmp.path().join("runs");
    let message = refused_bundle_run(&manager, &run, &root)
        .await
        .message
        .unwrap_or_default();
    assert!(message.contains("sha256"), "{message}");
    let workspace = root.join(&run).join("workspace");
    for name in ["a.bin", "b.bin", "c.bin", "d.bin", "ran.txt"] {
        assert!(!workspace.join(name).exists(), "{name} landed: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_prints_its_change_and_with_diff_the_patch() {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("keep.txt"), "before\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let child = Command::new(aac_host_binary())
        .args(["run", "--plugin"])
        .arg(plugin("shell"))
        .arg("--workspace")
        .arg(workspace.path())
        .arg("--diff")
        .arg("echo after > keep.txt; echo new > made.txt")
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("changes: 1 added, 1 modified, 0 deleted"),
        "{stderr}"
    );
    assert!(
        stdout.contains("diff --git a/made.txt b/made.txt"),
        "{stdout}"
    );
    assert!(stdout.contains("-before\n+after\n"), "{stdout}");
    // The embedded manager's access lines are for debugging (AAC_LOG=access=debug), not the output.
    assert!(!stderr.contains("route="), "{stderr}");
    // The workspace given is the user's: it stays.
    assert!(workspace.path().join("made.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_attempt_continues_from_the_finished_commands_results() {
    use aac_host::manager::protocol::CommandStatus;
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", repo.to_str().unwrap()]));
    let first: serde_json::Value = serde_json::from_slice(&manager.cli_ok(&[
        "enqueue",
        &run,
        "echo one > one.txt; rm old.txt",
    ]))
    .unwrap();
    let first = first["id"].as_str().unwrap().to_owned();
    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    // The first runner finishes the command, then drains: the run goes back to the queue.
    let runner = manager.spawn_runner(&run, &root, &["--idle-timeout", "120s"]);
    let client = manager.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while client.get_command(&run, &first).await.unwrap().status != CommandStatus::Completed {
        assert!(
            std::time::Instant::now() < deadline,
            "the first command never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&runner, "TERM");
    let (code, output) = wait(runner).await;
    assert_eq!(
        client.get_run(&run).await.unwrap().status,
        RunStatus::Queued,
        "{code} {output}"
    );

    // The next attempt starts from the bundle plus the first command's result.
    manager.cli_ok(&["enqueue", &run, "cat one.txt > copy.txt; test ! -e old.txt"]);
    let (code, output) = manager
        .run_runner(&run, &root, &["--keep-workspaces"])
        .await;
    assert_eq!(code, 0, "{output}");
    let shown = client.get_run(&run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Completed, "{shown:?}");
    assert_eq!(shown.attempts.len(), 2, "{shown:?}");
    let workspace = root.join(&run).join("attempt-2").join("workspace");
    assert_eq!(
        std::fs::read_to_string(workspace.join("copy.txt")).unwrap(),
        "one\n"
    );
    // The run's diff still goes from the bundle, over both attempts.
    let diff = String::from_utf8(manager.cli_ok(&["diff", &run])).unwrap();
    for file in ["one.txt", "copy.txt", "old.txt"] {
        assert!(
            diff.contains(&format!("diff --git a/{file} b/{file}")),
            "{diff}"
        );
    }
    let results = client.results(&run).await.unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        (results[1].added, results[1].deleted),
        (1, 0),
        "the second command's own change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_command_is_replaced_by_an_attempt_that_restores_and_reruns_it() {
    use aac_host::manager::protocol::CommandStatus;
    let manager = ManagerProcess::start(&[]).await;
    let client = manager.client();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", repo.to_str().unwrap()]));
    manager.cli_ok(&["enqueue", &run, "echo one > one.txt"]);
    let second: serde_json::Value = serde_json::from_slice(&manager.cli_ok(&[
        "enqueue",
        &run,
        "cat one.txt > copy.txt; echo started; sleep 8",
    ]))
    .unwrap();
    let second = second["id"].as_str().unwrap().to_owned();
    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let runner = manager.spawn_runner(&run, &root, &["--one-shot"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let events = client.events(&run, 0).await.unwrap();
        if events
            .iter()
            .any(|e| e.command_id == second && e.payload["text"] == "started")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "command 2 never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&runner, "KILL");
    let _ = wait(runner).await;
    // The lease runs out; the interrupted command goes back to the queue, not the run to `failed`.
    while client.get_run(&run).await.unwrap().status != RunStatus::Queued {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, output) = manager
        .run_runner(&run, &root, &["--keep-workspaces"])
        .await;
    assert_eq!(code, 0, "{output}");
    let shown = client.get_run(&run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Completed, "{shown:?}");
    assert_eq!(
        client.get_command(&run, &second).await.unwrap().status,
        CommandStatus::Completed
    );
    let workspace = root.join(&run).join("attempt-2").join("workspace");
    assert_eq!(
        std::fs::read_to_string(workspace.join("copy.txt")).unwrap(),
        "one\n",
        "command 2 ran again on command 1's change"
    );
}
