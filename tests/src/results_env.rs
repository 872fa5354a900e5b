//! A manager process and the `aac-host` CLI and runner processes around it, for the results tests
//! (issue 14): a git repository goes in with `runs create --bundle`, runners work on it, and the
//! CLI takes the change back out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aac_host::manager::ManagerClient;

use crate::aac_host_binary;
use crate::child::{signal, wait};
use crate::plugin;
use crate::runs::TOKEN;

pub struct ManagerProcess {
    child: Option<Child>,
    pub url: String,
    dir: tempfile::TempDir,
    /// The runners' plugin cache.
    pub cache: tempfile::TempDir,
}

impl ManagerProcess {
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(aac_host_binary())
            .args(["manager", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(dir.path().join("m.redb"))
            .args(extra)
            .env("AAC_MANAGER_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let client = ManagerClient::new(&url, TOKEN).unwrap();
        while client.list_runs(None).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child: Some(child),
            url,
            dir,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// Where the manager keeps the blob `sha256` (its store file is `m.redb` in its directory).
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.path().join("m.redb.blobs/sha256").join(sha256)
    }

    /// The bundle reference of `run`, as the manager stored it.
    pub async fn bundle_of(&self, run: &str) -> aac_host::manager::protocol::BundleRef {
        let shown = self.client().get_run(run).await.unwrap();
        shown.bundle.expect("the run has a bundle")
    }

    pub fn client(&self) -> ManagerClient {
        ManagerClient::new(&self.url, TOKEN).unwrap()
    }

    /// `aac-host runs ARGS…` against this manager.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(aac_host_binary())
            .arg("runs")
            .args(args)
            .env("AAC_MANAGER_URL", &self.url)
            .env("AAC_MANAGER_TOKEN", TOKEN)
            .output()
            .unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "runs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A runner process that works on `run` until its commands are done.
    pub async fn run_runner(&self, run: &str, root: &Path, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["--one-shot"];
        args.extend_from_slice(extra);
        wait(self.spawn_runner(run, root, &args)).await
    }

    /// A runner process with the shell plugin and the bundle materializer.
    pub fn spawn_runner(&self, run: &str, root: &Path, extra: &[&str]) -> Child {
        let mut command = self.runner_command(run, root);
        command
            .arg("--plugin")
            .arg(plugin("shell"))
            .arg("--bundle-plugin")
            .arg(plugin("bundle"))
            .args(extra);
        command.spawn().unwrap()
    }

    /// A runner command for `run` (lease, JSON lines, workspace root, cache, token), without its
    /// plugins: the caller adds `--plugin …` or `--config …`.
    pub fn runner_command(&self, run: &str, root: &Path) -> Command {
        let mut command = Command::new(aac_host_binary());
        command
            .args(["--manager-url", &self.url, "--run-id", run])
            .args(["--lease", "10s", "--json"])
            .arg("--workspace-root")
            .arg(root)
            .env("AAC_MANAGER_TOKEN", TOKEN)
            .env("AAC_CACHE_DIR", self.cache.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }
}

/// A fresh clone of `repo` in `scratch/fresh` with `diff` applied by `git apply --index`, as a user
/// would take a run's result; returns the clone's directory.
pub fn applied_to_fresh_clone(repo: &Path, diff: &[u8], scratch: &Path) -> PathBuf {
    let fresh = scratch.join("fresh");
    git(
        scratch,
        &[
            "clone",
            "-q",
            repo.to_str().unwrap(),
            fresh.to_str().unwrap(),
        ],
    );
    let patch = scratch.join("change.patch");
    std::fs::write(&patch, diff).unwrap();
    git(&fresh, &["apply", "--index", patch.to_str().unwrap()]);
    fresh
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small repository: committed files, and an ignored build directory.
pub fn repo(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::create_dir_all(repo.join("target")).unwrap();
    std::fs::write(repo.join("README.md"), "# demo\n\nline two\n").unwrap();
    std::fs::write(repo.join("src/lib.txt"), "unchanged\n").unwrap();
    std::fs::write(repo.join("old.txt"), "to be deleted\n").unwrap();
    std::fs::write(repo.join("script.sh"), "echo hi\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(repo.join("target/build-output"), "ignored\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);
    repo
}

pub fn run_id(created: &[u8]) -> String {
    let run: serde_json::Value = serde_json::from_slice(created).unwrap();
    run["id"].as_str().unwrap().to_owned()
}

/// Every file below `dir` except `.git`: path → (content, executable).
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let exec = entry.metadata().unwrap().permissions().mode() & 0o100 != 0;
                out.insert(rel, (std::fs::read(&path).unwrap(), exec));
            }
        }
    }
    out
}
