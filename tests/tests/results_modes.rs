//! File modes end to end (issue 14): a git repository with an executable script goes in with
//! `runs create --bundle`, a shell turn in Docker runs `./run-tests.sh` as it arrived, makes one
//! script executable and another not, and the run's diff carries git's `old mode`/`new mode`
//! lines, which `git apply` reproduces on a fresh clone.

use std::os::unix::fs::PermissionsExt;

use aac_host::manager::protocol::RunStatus;
use aac_tests::results_env::{ManagerProcess, applied_to_fresh_clone, git, run_id, tree};

const TURN: &str = "./run-tests.sh > test-output.txt 2>&1; chmod -x tools/old.sh; \
    chmod +x tools/new.sh";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executable_script_arrives_runnable_and_mode_changes_come_back_as_a_diff() {
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("tools")).unwrap();
    let script = |path: &str, body: &str, mode: u32| {
        std::fs::write(repo.join(path), body).unwrap();
        std::fs::set_permissions(repo.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    script(
        "run-tests.sh",
        "#!/bin/sh\necho all 3 tests passed\n",
        0o755,
    );
    script("tools/old.sh", "#!/bin/sh\necho old\n", 0o755);
    script("tools/new.sh", "#!/bin/sh\necho new\n", 0o644);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);

    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", repo.to_str().unwrap()]));
    manager.cli_ok(&["enqueue", &run, TURN]);
    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let (code, output) = manager
        .run_runner(&run, &root, &["--keep-workspaces"])
        .await;
    assert_eq!(code, 0, "{output}");
    let shown = manager.client().get_run(&run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Completed, "{shown:?}");
    let workspace = root.join(&run).join("workspace");
    // The sandbox ran the script as it arrived from the bundle: executable.
    assert_eq!(
        std::fs::read_to_string(workspace.join("test-output.txt")).unwrap(),
        "all 3 tests passed\n"
    );

    let diff = manager.cli_ok(&["diff", &run]);
    let text = String::from_utf8_lossy(&diff);
    assert!(
        text.contains("diff --git a/tools/old.sh b/tools/old.sh\nold mode 100755\nnew mode 100644"),
        "{text}"
    );
    assert!(
        text.contains("diff --git a/tools/new.sh b/tools/new.sh\nold mode 100644\nnew mode 100755"),
        "{text}"
    );
    assert!(
        !text.contains("a/run-tests.sh"),
        "the script's mode is the bundle's: no change: {text}"
    );
    let fresh = applied_to_fresh_clone(&repo, &diff, tmp.path());
    let applied = tree(&fresh);
    assert_eq!(applied, tree(&workspace));
    assert!(!applied["tools/old.sh"].1 && applied["tools/new.sh"].1);
    assert!(applied["run-tests.sh"].1);
}
