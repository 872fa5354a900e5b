//! The CLI's side of bundles and results: `runs create --bundle`, `runs diff`, `runs files`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::manager::ManagerClient;
use crate::manager::protocol::BundleRef;
use crate::manager::results::{BLOB_BUNDLE_KIND, blob_path};
use crate::results::pack::{pack_dir, sha256_file};

/// Packs (a directory) or takes (a `.tar`) the bundle at `path`, uploads it, and returns the
/// reference a run names it by.
pub async fn upload_bundle(client: &ManagerClient, path: &Path) -> Result<BundleRef> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--bundle {}: no such file or directory", path.display()))?;
    let (_packed, file, sha256, size) = if meta.is_dir() {
        let dir = path.to_owned();
        let packed = tokio::task::spawn_blocking(move || pack_dir(&dir))
            .await?
            .with_context(|| format!("--bundle {}: could not pack it", path.display()))?;
        tracing::info!(
            files = packed.files,
            bytes = packed.size,
            git = packed.git,
            "packed the bundle"
        );
        let file = packed.file.path().to_owned();
        let (sha, size) = (packed.sha256.clone(), packed.size);
        (Some(packed), file, sha, size)
    } else if meta.is_file() {
        let file = path.to_owned();
        let (sha, size) = tokio::task::spawn_blocking(move || sha256_file(&file)).await??;
        (None, path.to_owned(), sha, size)
    } else {
        bail!(
            "--bundle {}: neither a directory nor a file",
            path.display()
        );
    };
    client
        .put_blob_file(&sha256, &file)
        .await
        .with_context(|| {
            format!(
                "--bundle {}: the upload failed; no run was created",
                path.display()
            )
        })?;
    Ok(BundleRef {
        kind: BLOB_BUNDLE_KIND.into(),
        location: blob_path(&sha256),
        sha256: Some(sha256),
        size: Some(size),
    })
}
