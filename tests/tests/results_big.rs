//! A 200 MB workspace with a one-line change (issue 14 § Tests): the bundle goes in from the CLI
//! (`runs create --bundle`), a shell turn in Docker changes one line of one small file, the run
//! completes, and the stored result is that line's size, not the workspace's. Disk use is bounded
//! (about 1 GB in one temporary directory, removed at the end).

use std::io::Write;
use std::path::Path;

use aac_host::manager::protocol::RunStatus;
use aac_tests::results_env::{ManagerProcess, git, run_id};

const DATA_FILES: usize = 200;
const DATA_FILE_BYTES: usize = 1 << 20;

/// `DATA_FILES` files of 1 MiB of xorshift noise (incompressible, the worst case for the packer
/// and git), written from a buffer: fast, unlike a shell loop over /dev/urandom.
fn write_data(dir: &Path) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buffer = vec![0u8; DATA_FILE_BYTES];
    for i in 0..DATA_FILES {
        for chunk in buffer.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let path = dir.join(format!("data/part{:02}/blob{i:03}.bin", i % 10));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&buffer)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_line_change_in_a_200_mb_workspace_is_a_small_result() {
    let manager = ManagerProcess::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    write_data(&repo);
    std::fs::write(repo.join("settings.ini"), "[app]\nname = demo\nlevel = 1\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);
    // The repository's own history would double the bundle: it is not what is measured here.
    std::fs::remove_dir_all(repo.join(".git")).unwrap();

    let run = run_id(&manager.cli_ok(&["create", "shell", "--bundle", repo.to_str().unwrap()]));
    let bundle = manager.bundle_of(&run).await;
    assert!(
        bundle.size.unwrap() > (DATA_FILES * DATA_FILE_BYTES) as u64,
        "{bundle:?}"
    );
    manager.cli_ok(&[
        "enqueue",
        &run,
        "sed -i 's/level = 1/level = 2/' settings.ini",
    ]);
    let root = tmp.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let (code, output) = manager.run_runner(&run, &root, &[]).await;
    assert_eq!(code, 0, "{output}");
    let shown = manager.client().get_run(&run).await.unwrap();
    assert_eq!(shown.status, RunStatus::Completed, "{shown:?}");
    assert!(
        !root.join(&run).exists(),
        "the workspace is removed once its results are stored"
    );

    let results: serde_json::Value =
        serde_json::from_slice(&manager.cli_ok(&["results", &run])).unwrap();
    let result = &results[0];
    assert_eq!(
        (&result["added"], &result["modified"], &result["deleted"]),
        (&0.into(), &1.into(), &0.into()),
        "{result}"
    );
    let files = result["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{result}");
    assert_eq!(files[0]["path"], "settings.ini");
    // What the manager stores for the turn: two diffs and one file's content.
    let stored = result["diff_bytes"].as_u64().unwrap()
        + result["run_diff_bytes"].as_u64().unwrap()
        + files[0]["bytes"].as_u64().unwrap();
    assert!(stored < 2048, "{stored} bytes stored: {result}");
    let diff = manager.cli_ok(&["diff", &run]);
    let text = String::from_utf8_lossy(&diff);
    assert!(text.contains("-level = 1\n+level = 2\n"), "{text}");
    assert!(!text.contains("data/"), "{text}");
}
