//! The blob store: bundles and command results, content-addressed by sha256, as plain files in a
//! directory beside the redb file (`<store>.blobs/`). Files, not redb values: a blob may be
//! gigabytes, streamed in and out without holding a transaction or memory, and a blob's name is
//! its hash, so a rename makes it appear whole or not at all and a retried upload is a no-op.
//!
//! Which runs use a blob is kept in redb (`blob_refs`, `run_blobs`), written in the same
//! transaction as the run or result that refers to it. A blob no run refers to is removed by the
//! sweep once it is older than the grace (an upload waiting for its `create run`), within a write
//! transaction, so it cannot race a run being created on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use redb::{ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};

use super::{Result, Store};
use crate::error::ManagerError;
use crate::protocol::BundleRef;
use crate::results::is_sha256;
use crate::results::{BLOB_BUNDLE_KIND, BlobStored};

/// (sha256, run) → (): the runs that use a blob.
pub(super) const BLOB_REFS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blob_refs");
/// (run, sha256) → (): the blobs a run uses (removed with the run).
pub(super) const RUN_BLOBS: TableDefinition<(&str, &str), ()> = TableDefinition::new("run_blobs");

/// Default largest blob the manager takes.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 4 << 30;
/// How long an unreferenced blob is kept (time to create the run that uses it).
pub const DEFAULT_BLOB_GRACE: Duration = Duration::from_secs(3600);
/// Blob files one sweep looks at, at most.
const SWEEP_BLOBS: usize = 1000;

/// The blob directory of a store file.
#[derive(Clone, Debug)]
pub struct BlobDir {
    root: PathBuf,
}

/// Why an upload was refused.
fn bad_hash(expected: &str, actual: &str) -> ManagerError {
    ManagerError::BadRequest(format!(
        "the uploaded body's sha256 is {actual}, but the path names {expected}; nothing was stored"
    ))
}

pub(crate) fn check_sha(sha256: &str) -> Result<()> {
    if is_sha256(sha256) {
        Ok(())
    } else {
        Err(ManagerError::BadRequest(format!(
            "{sha256:?} is not a sha256 (64 lowercase hex digits)"
        )))
    }
}

impl BlobDir {
    /// The blob directory beside the store file `db` (`<db>.blobs`).
    pub fn beside(db: &Path) -> Result<Self> {
        let mut name = db.as_os_str().to_owned();
        name.push(".blobs");
        let root = PathBuf::from(name);
        for dir in [root.join("sha256"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                ManagerError::Storage(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `sha256` lives (whether or not it is there).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// The size of a stored blob; `None` when it is not stored.
    pub fn size(&self, sha256: &str) -> Option<u64> {
        std::fs::metadata(self.path(sha256)).ok().map(|m| m.len())
    }

    /// Stores the body under `sha256`, hashing it as it streams to a temporary file; refuses a
    /// body over `max` bytes (413) or whose hash differs (400). A blob already stored is not
    /// written again (`created: false`): a retried upload is harmless.
    pub async fn put<S, E>(&self, sha256: &str, body: S, max: u64) -> Result<BlobStored>
    where
        S: Stream<Item = std::result::Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_sha(sha256)?;
        if let Some(size) = self.size(sha256) {
            // A blob stored again counts as new for the sweep's grace.
            let _ = std::fs::File::options()
                .append(true)
                .open(self.path(sha256))
                .and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(BlobStored {
                sha256: sha256.to_owned(),
                size,
                created: false,
            });
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{sha256}.{}", uuid::Uuid::new_v4().simple()));
        let written = self.write_temp(&tmp, body, max).await;
        let (size, actual) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if actual != sha256 {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(bad_hash(sha256, &actual));
        }
        tokio::fs::rename(&tmp, self.path(sha256))
            .await
            .map_err(|e| ManagerError::Storage(format!("cannot store blob {sha256}: {e}")))?;
        Ok(BlobStored {
            sha256: sha256.to_owned(),
            size,
            created: true,
        })
    }

    /// Streams the body into `tmp` (written on a blocking thread, beside the hashing) and makes
    /// it durable; returns its size and sha256. A body that breaks off or runs over `max` is not
    /// synced (the caller removes the file).
    async fn write_temp<S, E>(&self, tmp: &Path, mut body: S, max: u64) -> Result<(u64, String)>
    where
        S: Stream<Item = std::result::Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let storage = |e: std::io::Error| ManagerError::Storage(format!("blob temp file: {e}"));
        let file = std::fs::File::create(tmp).map_err(storage)?;
        let (chunks, mut to_write) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_QUEUE);
        let writing = tokio::task::spawn_blocking(move || write_chunks(file, &mut to_write));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let received = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    ManagerError::BadRequest(format!(
                        "the upload broke off after {size} bytes: {e}"
                    ))
                })?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(ManagerError::PayloadTooLarge(format!(
                        "the blob is over the manager's blob limit of {max} bytes; nothing was \
                         stored"
                    )));
                }
                hasher.update(&chunk);
                if chunks.send(chunk).await.is_err() {
                    // The writer stopped: its error says why.
                    break;
                }
            }
            Ok(())
        }
        .await;
        drop(chunks);
        let written = writing.await.map_err(|e| {
            ManagerError::Storage(format!("blob temp file: the writer failed: {e}"))
        })?;
        received?;
        let file = written.map_err(storage)?;
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| ManagerError::Storage(format!("blob temp file: the sync failed: {e}")))?
            .map_err(storage)?;
        Ok((size, hex::encode(hasher.finalize())))
    }
}

/// Chunks of an upload waiting for the disk, at most (a chunk is at most hyper's read buffer,
/// ≈ 400 KiB: a few MiB per upload).
const WRITE_QUEUE: usize = 16;
/// Every this many bytes the kernel is asked to start writing them out, so that the final fsync
/// waits only for the last few MiB instead of the whole blob.
const WRITE_BEHIND: u64 = 2 << 20;

/// Writes every chunk to `file`, starting the writeback as it goes; returns the file to be synced.
fn write_chunks(
    mut file: std::fs::File,
    chunks: &mut tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    let (mut written, mut started) = (0u64, 0u64);
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        if written - started >= WRITE_BEHIND {
            start_writeback(&file, started, written - started);
            started = written;
        }
    }
    Ok(file)
}

/// A hint: start writing `len` bytes at `offset` to the disk now, without waiting for them.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a file descriptor `file` keeps open; it reads no memory.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

impl Store {
    pub fn blobs(&self) -> &BlobDir {
        &self.blobs
    }

    /// Records that `run` uses the blob `sha256`, which must be stored.
    pub(super) fn add_blob_ref(tx: &redb::WriteTransaction, run: &str, sha256: &str) -> Result<()> {
        tx.open_table(BLOB_REFS)?.insert((sha256, run), ())?;
        tx.open_table(RUN_BLOBS)?.insert((run, sha256), ())?;
        Ok(())
    }

    /// The blob a run's bundle names (kind `blob`), checked: its location and hash agree and the
    /// blob is stored, with the size the reference gives.
    pub(super) fn bundle_blob(&self, bundle: Option<&BundleRef>) -> Result<Option<String>> {
        let Some(bundle) = bundle.filter(|b| b.kind == BLOB_BUNDLE_KIND) else {
            return Ok(None);
        };
        let sha = bundle.location.strip_prefix("/v1/blobs/").unwrap_or("");
        check_sha(sha).map_err(|_| {
            ManagerError::BadRequest(format!(
                "bundle: a `blob` bundle's location is /v1/blobs/SHA256, not {:?}",
                bundle.location
            ))
        })?;
        if bundle.sha256.as_deref() != Some(sha) {
            return Err(ManagerError::BadRequest(format!(
                "bundle: the sha256 {:?} differs from the blob its location names ({sha})",
                bundle.sha256
            )));
        }
        let Some(size) = self.blobs.size(sha) else {
            return Err(ManagerError::BadRequest(format!(
                "bundle: blob {sha} is not on the manager; upload it first (PUT /v1/blobs/{sha})"
            )));
        };
        if bundle.size.is_some_and(|s| s != size) {
            return Err(ManagerError::BadRequest(format!(
                "bundle: the blob {sha} is {size} bytes, but the reference says {:?}",
                bundle.size
            )));
        }
        Ok(Some(sha.to_owned()))
    }

    /// Removes blobs no run refers to whose file is older than `grace`, at most [`SWEEP_BLOBS`]
    /// files looked at; returns how many were removed.
    pub fn sweep_blobs(&self, grace: Duration) -> Result<usize> {
        let dir = self.blobs.root.join("sha256");
        let now = SystemTime::now();
        let mut old = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ManagerError::Storage(format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries.take(SWEEP_BLOBS).flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let aged = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= grace);
            if aged && is_sha256(&name) {
                old.push(name);
            }
        }
        if old.is_empty() {
            return Ok(0);
        }
        let tx = self.db.begin_write()?;
        let mut removed = 0;
        {
            let refs = tx.open_table(BLOB_REFS)?;
            for sha in old {
                let used = refs
                    .range((sha.as_str(), "")..)?
                    .next()
                    .transpose()?
                    .is_some_and(|(k, _)| k.value().0 == sha);
                if !used && std::fs::remove_file(dir.join(&sha)).is_ok() {
                    removed += 1;
                }
            }
        }
        tx.commit()?;
        Ok(removed)
    }
}

/// Removes up to `budget` blob references of `run`; true when none is left.
pub(super) fn purge_blob_refs(
    tx: &redb::WriteTransaction,
    run: &str,
    budget: &mut usize,
) -> Result<bool> {
    let mut run_blobs = tx.open_table(RUN_BLOBS)?;
    let mut refs = tx.open_table(BLOB_REFS)?;
    let shas: Vec<String> = run_blobs
        .range((run, "")..)?
        .take(*budget + 1)
        .map(|e| e.map(|(k, _)| (k.value().0 == run, k.value().1.to_owned())))
        .collect::<std::result::Result<Vec<_>, _>>()?
        .into_iter()
        .take_while(|(same_run, _)| *same_run)
        .map(|(_, sha)| sha)
        .collect();
    for sha in shas.iter().take(*budget) {
        run_blobs.remove((run, sha.as_str()))?;
        refs.remove((sha.as_str(), run))?;
    }
    if shas.len() > *budget {
        *budget = 0;
        return Ok(false);
    }
    *budget -= shas.len();
    Ok(true)
}
