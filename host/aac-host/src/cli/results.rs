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
        crate::results::pack::check_archive(path)
            .with_context(|| format!("--bundle {}", path.display()))?;
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

/// Most bytes of a diff `runs diff` takes.
const MAX_DIFF_BYTES: u64 = 4 << 30;

/// Prints the run's diff (or one command's) to stdout, as the manager stored it.
pub async fn print_diff(client: &ManagerClient, run: &str, command: Option<&str>) -> Result<()> {
    use std::io::Write;
    let diff = client.diff(run, command, MAX_DIFF_BYTES).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(&diff)?;
    out.flush()?;
    Ok(())
}

/// Whether a changed file's path is safe to write below an output directory: relative, no `..`.
fn safe_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Writes each file the run changed, with its latest content, below `out`.
pub async fn write_files(client: &ManagerClient, run: &str, out: &Path) -> Result<()> {
    use crate::manager::results::FileChange;
    let mut files = client.changed_files(run).await?;
    // Links last: no file is then written through a link this command created.
    files.sort_by_key(|f| f.mode.as_deref() == Some("120000"));
    let (mut written, mut deleted, mut omitted) = (0usize, 0usize, 0usize);
    for file in files {
        if !safe_relative(&file.path) {
            bail!(
                "the manager listed {:?}, which is not a relative path inside the workspace",
                file.path
            );
        }
        let target = out.join(&file.path);
        match (&file.change, &file.sha256) {
            (FileChange::Deleted, _) => {
                eprintln!("deleted: {}", file.path);
                deleted += 1;
            }
            (_, None) => {
                eprintln!("omitted (over the result limit): {}", file.path);
                omitted += 1;
            }
            (_, Some(sha)) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                if file.mode.as_deref() == Some("120000") {
                    let link = client.get_blob(sha, 1 << 20).await?;
                    let _ = std::fs::remove_file(&target);
                    std::os::unix::fs::symlink(String::from_utf8_lossy(&link).as_ref(), &target)
                        .with_context(|| format!("cannot create the link {}", target.display()))?;
                } else {
                    client
                        .get_blob_to_file(sha, &target, u64::MAX)
                        .await
                        .with_context(|| format!("cannot fetch {}", file.path))?;
                    if file.mode.as_deref() == Some("100755") {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
                    }
                }
                written += 1;
            }
        }
    }
    eprintln!(
        "{written} file(s) written to {}, {deleted} deleted, {omitted} omitted",
        out.display()
    );
    Ok(())
}
