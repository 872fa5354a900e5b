//! Blobs and command results: what a run's workspace starts from (a bundle uploaded as a blob) and
//! what each command changed in it (a diff and the changed files, stored as blobs).

use serde::{Deserialize, Serialize};

/// `BundleRef.kind` of a bundle stored in the manager's blob store: `location` is
/// `/v1/blobs/{sha256}`, fetched by the runner with its own token from the manager it works for.
pub const BLOB_BUNDLE_KIND: &str = "blob";

/// Whether `text` is a sha256 in lowercase hex (the blob store's key).
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The manager's blob path of `sha256` (a bundle's `location`).
pub fn blob_path(sha256: &str) -> String {
    format!("/v1/blobs/{sha256}")
}

/// The reply of `PUT /v1/blobs/{sha256}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    pub sha256: String,
    pub size: u64,
    /// False when the blob was already stored (an idempotent retry).
    pub created: bool,
}

/// How a file changed in one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileChange {
    Added,
    Modified,
    Deleted,
}

/// One changed file of a command's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// Relative to the workspace, `/`-separated.
    pub path: String,
    pub change: FileChange,
    /// Its size after the command (0 when deleted).
    #[serde(default)]
    pub bytes: u64,
    /// Its git mode after the command (`100644`, `100755`, `120000` for a link); absent when deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The blob holding its content after the command; absent when deleted, or when its content
    /// was left out past the result limit (`omitted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Its content is not stored: the command's result reached its limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omitted: bool,
}

/// What one command changed: `PUT /v1/runs/{run}/commands/{cmd}/result` (runner, with its lease
/// token) and `GET /v1/runs/{run}/result?command={cmd}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Set by the manager from the path.
    #[serde(default)]
    pub command_id: String,
    /// Set by the manager from the stored command.
    #[serde(default)]
    pub command_seq: u64,
    /// The blob of this command's git-compatible diff (from the state before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_sha256: Option<String>,
    #[serde(default)]
    pub diff_bytes: u64,
    /// The blob of the diff from the bundle to the state after this command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_diff_sha256: Option<String>,
    #[serde(default)]
    pub run_diff_bytes: u64,
    #[serde(default)]
    pub files: Vec<ChangedFile>,
    #[serde(default)]
    pub added: u64,
    #[serde(default)]
    pub modified: u64,
    #[serde(default)]
    pub deleted: u64,
    /// The result went past the runner's per-command limit: some diffs or file contents are left
    /// out (`files[].omitted`, a missing diff blob); `truncated_reason` says what.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
}

/// `GET /v1/runs/{run}/results`: every stored command result, in command order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultList {
    pub results: Vec<CommandResult>,
}
