//! Capturing what a command changed in the workspace.
//!
//! The baseline is a runner-local **shadow git repository** (`<run dir>/results.git`, its work
//! tree the workspace): after materialization, and after each command, the workspace is recorded
//! as a git tree (`git add -A` + `git write-tree`, which re-reads only files whose stat changed).
//! A command's change is `git diff-tree` between the tree before and after it; the run's change
//! is the diff from the tree right after materialization. git's own format is what `git apply`
//! takes: `diff --git`, new/deleted file modes, mode changes, binary files as `GIT binary patch`.
//!
//! What does not count: `.git` directories (git never adds them: a git workspace's own history is
//! internals, the agent's commits show as the tree they leave), and files the workspace's
//! `.gitignore` excludes (build output), as git would not show them either.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use crate::manager::results::FileChange;

/// A changed path between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeChange {
    pub path: String,
    pub change: FileChange,
    /// The git mode after the change (`100644`, `100755`, `120000`); `None` when deleted.
    pub mode: Option<String>,
}

/// The shadow repository of one workspace.
#[derive(Debug)]
pub struct Shadow {
    git_dir: PathBuf,
    work_tree: PathBuf,
}

/// Ends a NUL-separated list.
fn split_z(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|b| *b == 0).filter(|p| !p.is_empty())
}

impl Shadow {
    /// Creates the shadow repository at `git_dir` for `work_tree` (replacing one left there).
    pub fn create(git_dir: &Path, work_tree: &Path) -> Result<Self> {
        if git_dir.exists() {
            std::fs::remove_dir_all(git_dir)
                .with_context(|| format!("cannot remove {}", git_dir.display()))?;
        }
        std::fs::create_dir_all(git_dir)
            .with_context(|| format!("cannot create {}", git_dir.display()))?;
        let shadow = Self {
            git_dir: git_dir.to_owned(),
            work_tree: work_tree.to_owned(),
        };
        let init = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(git_dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .context("could not run git (results are captured with git; is it installed?)")?;
        if !init.status.success() {
            bail!(
                "git init {} failed: {}",
                git_dir.display(),
                String::from_utf8_lossy(&init.stderr).trim()
            );
        }
        shadow.git(&["config", "core.bare", "false"])?;
        Ok(shadow)
    }

    pub fn work_tree(&self) -> &Path {
        &self.work_tree
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        // Nothing of the runner's user or system git configuration applies; the workspace is
        // owned by the sandbox user, which git would otherwise call dubious.
        cmd.env("GIT_DIR", &self.git_dir)
            .env("GIT_WORK_TREE", &self.work_tree)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_INDEX_FILE")
            .args([
                "-c",
                "safe.directory=*",
                "-c",
                "core.autocrlf=false",
                "-c",
                "core.filemode=true",
                "-c",
                "core.symlinks=true",
                "-c",
                "core.quotepath=false",
                "-c",
                "advice.addEmbeddedRepo=false",
            ])
            .current_dir(&self.work_tree);
        cmd
    }

    fn git(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .command()
            .args(args)
            .output()
            .context("could not run git (results are captured with git; is it installed?)")?;
        if !out.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Records the workspace as it is now; returns its tree id.
    pub fn snapshot(&self) -> Result<String> {
        self.git(&["add", "-A", "--ignore-errors", "."])?;
        let out = self.git(&["write-tree"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The git diff from tree `from` to tree `to`.
    pub fn diff(&self, from: &str, to: &str) -> Result<Vec<u8>> {
        let out = self.git(&[
            "diff-tree",
            "-p",
            "--binary",
            "--full-index",
            "--no-renames",
            "--no-color",
            "-r",
            from,
            to,
        ])?;
        Ok(out.stdout)
    }

    /// The paths that differ from tree `from` to tree `to`.
    pub fn changes(&self, from: &str, to: &str) -> Result<Vec<TreeChange>> {
        let out = self.git(&["diff-tree", "-r", "-z", "--no-renames", from, to])?;
        let mut parts = split_z(&out.stdout);
        let mut changes = Vec::new();
        // `:OLDMODE NEWMODE OLDSHA NEWSHA STATUS` NUL `PATH` NUL, per path.
        while let (Some(meta), Some(path)) = (parts.next(), parts.next()) {
            let meta = String::from_utf8_lossy(meta);
            let fields: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            let [_, new_mode, _, _, status] = fields[..] else {
                bail!("git diff-tree printed {meta:?}, not a change line");
            };
            let change = match status.chars().next() {
                Some('A') => FileChange::Added,
                Some('D') => FileChange::Deleted,
                _ => FileChange::Modified,
            };
            changes.push(TreeChange {
                path: String::from_utf8_lossy(path).into_owned(),
                mode: (change != FileChange::Deleted).then(|| new_mode.to_owned()),
                change,
            });
        }
        Ok(changes)
    }

    /// The content of `path` in the workspace now (a link's target for a link).
    pub fn read(&self, change: &TreeChange) -> Result<Vec<u8>> {
        let full = self.work_tree.join(&change.path);
        if change.mode.as_deref() == Some("120000") {
            let target = std::fs::read_link(&full)
                .with_context(|| format!("cannot read the link {}", full.display()))?;
            return Ok(target.into_os_string().into_encoded_bytes());
        }
        std::fs::read(&full).with_context(|| format!("cannot read {}", full.display()))
    }
}
