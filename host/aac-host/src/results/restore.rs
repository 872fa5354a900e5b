//! A new attempt of a run continues from where the finished commands left the workspace: over the
//! materialized bundle, each path's latest change among the stored results of the run's finished
//! commands is written again (deleted, or its content from the blob store with its mode).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};

use crate::manager::ManagerClient;
use crate::manager::results::{ChangedFile, FileChange};

/// What a restore did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Commands whose results were applied.
    pub commands: usize,
    pub written: usize,
    pub deleted: usize,
    /// Files whose content was not stored (past the result limit): they stay as the bundle had them.
    pub omitted: Vec<String>,
}

fn inside(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Applies the stored results of the run's finished commands to `workspace`; `lease_token` is
/// the attempt's (a runner token reads only the results of the run it holds).
pub async fn restore(
    client: &ManagerClient,
    run: &str,
    lease_token: &str,
    workspace: &Path,
) -> Result<Restored> {
    let finished: std::collections::HashSet<String> = {
        let mut ids = std::collections::HashSet::new();
        let mut after = 0;
        loop {
            let batch = client
                .poll_commands(run, after, std::time::Duration::ZERO)
                .await?;
            let Some(last) = batch.commands.last() else {
                break;
            };
            after = last.seq;
            ids.extend(
                batch
                    .commands
                    .into_iter()
                    .filter(|c| c.status.is_terminal())
                    .map(|c| c.id),
            );
        }
        ids
    };
    let mut restored = Restored::default();
    let mut latest: BTreeMap<String, ChangedFile> = BTreeMap::new();
    for result in client.held_results(run, lease_token).await? {
        if !finished.contains(&result.command_id) {
            continue;
        }
        restored.commands += 1;
        for file in result.files {
            latest.insert(file.path.clone(), file);
        }
    }
    for (path, file) in latest {
        if !inside(&path) {
            bail!("a stored result names {path:?}, which is not a path inside the workspace");
        }
        let target = workspace.join(&path);
        if file.change == FileChange::Deleted {
            match std::fs::symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&target)?,
                Ok(_) => std::fs::remove_file(&target)?,
                Err(_) => {}
            }
            restored.deleted += 1;
            continue;
        }
        let Some(sha) = &file.sha256 else {
            restored.omitted.push(path);
            continue;
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if std::fs::symlink_metadata(&target).is_ok() {
            std::fs::remove_file(&target)
                .with_context(|| format!("cannot replace {}", target.display()))?;
        }
        if file.mode.as_deref() == Some("120000") {
            let link = client.get_blob(sha, 1 << 20).await?;
            std::os::unix::fs::symlink(String::from_utf8_lossy(&link).as_ref(), &target)
                .with_context(|| format!("cannot create the link {}", target.display()))?;
        } else {
            client
                .get_blob_to_file(sha, &target, u64::MAX)
                .await
                .with_context(|| format!("cannot restore {path}"))?;
            if file.mode.as_deref() == Some("100755") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        restored.written += 1;
    }
    Ok(restored)
}
