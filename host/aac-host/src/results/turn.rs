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
    /// The run's diff as the last stored result named it (its blob is on the manager): a
    /// command that changed nothing has the same run diff, which is neither computed nor sent
    /// again.
    last_run_diff: Option<StoredDiff>,
}

/// A diff whose blob the manager has.
#[derive(Clone, Debug)]
struct StoredDiff {
    sha256: String,
    bytes: u64,
}

/// A diff of a captured result: to upload, or already on the manager.
enum Diff {
    New(Vec<u8>),
    Stored(StoredDiff),
}

impl Diff {
    fn len(&self) -> u64 {
        match self {
            Diff::New(bytes) => bytes.len() as u64,
            Diff::Stored(stored) => stored.bytes,
        }
    }
}

/// sha256 of no bytes: the diff of a command that changed nothing.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What capturing one command's result gave.
pub struct Captured {
    pub result: CommandResult,
    /// The tree after the command, which becomes the next command's baseline once stored.
    tree: String,
    /// Each changed file with its content, in path order.
    files: Vec<(TreeChange, Option<Vec<u8>>)>,
    /// The command's diff and the run's, `None` when they did not fit in the limit.
    diffs: Option<(Diff, Diff)>,
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
                last_run_diff: None,
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
        self.last_run_diff = None;
        Ok(())
    }

    /// What the command that just ended changed, with its contents, cut at the result limit.
    pub async fn capture(&self) -> Result<Captured> {
        let shadow = self.shadow.clone();
        let (base, last, limit) = (self.base.clone(), self.last.clone(), self.limit);
        let last_run_diff = self.last_run_diff.clone();
        tokio::task::spawn_blocking(move || -> Result<Captured> {
            let tree = shadow.snapshot()?;
            // The same tree as after the last command: nothing changed, and git need not say so.
            let unchanged = tree == last;
            let (changes, diff) = if unchanged {
                (Vec::new(), Diff::New(Vec::new()))
            } else {
                (
                    shadow.changes(&last, &tree)?,
                    Diff::New(shadow.diff(&last, &tree)?),
                )
            };
            let run_diff = match last_run_diff {
                Some(stored) if unchanged => Diff::Stored(stored),
                _ if tree == base => Diff::New(Vec::new()),
                _ => Diff::New(shadow.diff(&base, &tree)?),
            };
            let mut result = CommandResult::default();
            let mut used = 0u64;
            let mut reasons = Vec::new();
            let diffs_fit = diff.len() + run_diff.len() <= limit;
            if diffs_fit {
                used += diff.len() + run_diff.len();
                result.diff_bytes = diff.len();
                result.run_diff_bytes = run_diff.len();
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
        let mut run_diff_stored = None;
        if let Some((diff, run_diff)) = captured.diffs.take() {
            // The empty diff is sent once a run, a run diff the last result named not at all.
            let mut sent_empty = self.last_run_diff.as_ref().map(|d| d.bytes) == Some(0);
            let mut stored = Vec::with_capacity(2);
            for diff in [diff, run_diff] {
                stored.push(match diff {
                    Diff::Stored(stored) => stored,
                    Diff::New(bytes) if bytes.is_empty() && sent_empty => StoredDiff {
                        sha256: EMPTY_SHA256.into(),
                        bytes: 0,
                    },
                    Diff::New(bytes) => {
                        let sha256 = sha256_hex(&bytes);
                        let len = bytes.len() as u64;
                        client
                            .put_blob(&sha256, bytes.into())
                            .await
                            .context("uploading a diff")?;
                        sent_empty |= len == 0;
                        StoredDiff { sha256, bytes: len }
                    }
                });
            }
            captured.result.diff_sha256 = Some(stored[0].sha256.clone());
            captured.result.run_diff_sha256 = Some(stored[1].sha256.clone());
            run_diff_stored = stored.pop();
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
        self.last_run_diff = run_diff_stored;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_diffs_hash_is_sha256_of_nothing() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}
