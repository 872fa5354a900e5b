//! A run's results as its runner produces them: the baseline recorded once the workspace is
//! materialized, and after each command its result (diffs and changed files as blobs, then the
//! metadata) stored on the manager before the command's status.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::capture::{Shadow, TreeChange};
use crate::manager::ManagerClient;
use crate::manager::results::{ChangedFile, CommandResult, FileChange};

/// Default most bytes (diffs and file contents) one command's result stores.
pub const DEFAULT_RESULT_BYTES: u64 = 256 << 20;

/// The results of one run: its shadow repository, the tree after materialization, and the tree
/// after the last command.
pub struct RunResults {
    shadow: Arc<Shadow>,
    base: String,
    last: String,
    limit: u64,
}

/// What capturing one command's result gave.
pub struct Captured {
    pub result: CommandResult,
    /// The tree after the command, which becomes the next command's baseline once stored.
    tree: String,
    /// Each changed file with its content, in path order.
    files: Vec<(TreeChange, Option<Vec<u8>>)>,
    /// The command's diff and the run's, `None` when they did not fit in the limit.
    diffs: Option<(Vec<u8>, Vec<u8>)>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl RunResults {
    /// Records the baseline of `workspace` (right after materialization) in `git_dir`.
    pub async fn start(git_dir: PathBuf, workspace: PathBuf, limit: u64) -> Result<Self> {
        tokio::task::spawn_blocking(move || {
            let shadow = Shadow::create(&git_dir, &workspace)?;
            let base = shadow.snapshot()?;
            Ok(Self {
                shadow: Arc::new(shadow),
                last: base.clone(),
                base,
                limit,
            })
        })
        .await
        .context("the baseline task failed")?
    }

    /// Records the workspace as it is now as the next command's baseline, keeping the run's
    /// (after a new attempt restored earlier commands' results over the bundle).
    pub async fn rebase(&mut self) -> Result<()> {
        let shadow = self.shadow.clone();
        self.last = tokio::task::spawn_blocking(move || shadow.snapshot())
            .await
            .context("the snapshot task failed")??;
        Ok(())
    }

    /// What the command that just ended changed, with its contents, cut at the result limit.
    pub async fn capture(&self) -> Result<Captured> {
        let shadow = self.shadow.clone();
        let (base, last, limit) = (self.base.clone(), self.last.clone(), self.limit);
        tokio::task::spawn_blocking(move || -> Result<Captured> {
            let tree = shadow.snapshot()?;
            let changes = shadow.changes(&last, &tree)?;
            let diff = shadow.diff(&last, &tree)?;
            let run_diff = shadow.diff(&base, &tree)?;
            let mut result = CommandResult::default();
            let mut used = 0u64;
            let mut reasons = Vec::new();
            let diffs_fit = (diff.len() + run_diff.len()) as u64 <= limit;
            if diffs_fit {
                used += (diff.len() + run_diff.len()) as u64;
                result.diff_bytes = diff.len() as u64;
                result.run_diff_bytes = run_diff.len() as u64;
            } else {
                reasons.push(format!(
                    "the diffs ({} and {} bytes) are over the result limit of {limit} bytes",
                    diff.len(),
                    run_diff.len()
                ));
            }
            let mut files = Vec::new();
            let mut omitted = 0usize;
            for change in changes {
                match change.change {
                    FileChange::Added => result.added += 1,
                    FileChange::Modified => result.modified += 1,
                    FileChange::Deleted => result.deleted += 1,
                }
                let content = match change.change {
                    FileChange::Deleted => None,
                    // A nested repository (gitlink) has no content of its own here.
                    _ if change.mode.as_deref() == Some("160000") => None,
                    _ => Some(shadow.read(&change)?),
                };
                let bytes = content.as_ref().map_or(0, |c| c.len() as u64);
                let keep = content.is_some() && used + bytes <= limit;
                if keep {
                    used += bytes;
                } else if content.is_some() {
                    omitted += 1;
                }
                result.files.push(ChangedFile {
                    path: change.path.clone(),
                    change: change.change,
                    bytes,
                    mode: change.mode.clone(),
                    sha256: content.as_deref().filter(|_| keep).map(sha256_hex),
                    omitted: content.is_some() && !keep,
                });
                files.push((change, content.filter(|_| keep)));
            }
            if omitted > 0 {
                reasons.push(format!(
                    "{omitted} changed file(s) left out: past the result limit of {limit} bytes"
                ));
            }
            if !reasons.is_empty() {
                result.truncated = true;
                result.truncated_reason = Some(reasons.join("; "));
            }
            Ok(Captured {
                diffs: diffs_fit.then_some((diff, run_diff)),
                result,
                tree,
                files,
            })
        })
        .await
        .context("the capture task failed")?
    }

    /// Uploads the captured blobs and stores the result under the lease; then the captured tree
    /// is the next command's baseline.
    pub async fn store(
        &mut self,
        client: &ManagerClient,
        run: &str,
        command: &str,
        token: &str,
        mut captured: Captured,
    ) -> Result<CommandResult> {
        if let Some((diff, run_diff)) = captured.diffs.take() {
            for (bytes, slot) in [
                (diff, &mut captured.result.diff_sha256),
                (run_diff, &mut captured.result.run_diff_sha256),
            ] {
                let sha = sha256_hex(&bytes);
                client
                    .put_blob(&sha, bytes.into())
                    .await
                    .context("uploading a diff")?;
                *slot = Some(sha);
            }
        }
        for (change, content) in captured.files {
            if let Some(content) = content {
                let sha = sha256_hex(&content);
                client
                    .put_blob(&sha, content.into())
                    .await
                    .with_context(|| format!("uploading the changed file {}", change.path))?;
            }
        }
        let stored = client
            .put_result(run, command, token, &captured.result)
            .await
            .context("storing the command's result")?;
        self.last = captured.tree;
        Ok(stored)
    }
}
