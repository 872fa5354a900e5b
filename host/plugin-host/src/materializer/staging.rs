//! The staging directory a materializer writes into: beside the workspace (same filesystem, so
//! moving it in is a rename), removed on every path but success.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BundleLimits, MaterializeSummary};

/// An error about what was staged: a message and the entry at fault.
pub type StagingError = (String, Option<String>);

pub struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates an empty staging directory next to `workspace` (whose parent is created if needed).
    pub fn create(workspace: &Path) -> Result<Self> {
        let parent = workspace
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the workspace's parent {}", parent.display()))?;
        let name = workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workspace".into());
        let path = parent.join(format!(
            ".{name}.aac-staging-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating the staging directory {}", path.display()))?;
        Ok(Self {
            path,
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Walks what the plugin wrote: counts entries and bytes against `limits`, and refuses links
    /// that leave the bundle once resolved (through any chain of links) and anything that is not
    /// a file, directory or link.
    pub fn verify(&self, limits: &BundleLimits) -> Result<MaterializeSummary, StagingError> {
        let mut summary = MaterializeSummary { files: 0, bytes: 0 };
        let mut pending = vec![PathBuf::new()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(self.path.join(&dir))
                .map_err(|err| (format!("an unreadable directory: {err}"), entry_name(&dir)))?;
            for entry in entries {
                let entry = entry
                    .map_err(|err| (format!("an unreadable directory: {err}"), entry_name(&dir)))?;
                let relative = dir.join(entry.file_name());
                let name = relative.to_string_lossy().into_owned();
                let meta = entry
                    .metadata()
                    .map_err(|err| (format!("an unreadable entry: {err}"), Some(name.clone())))?;
                summary.files += 1;
                if summary.files > limits.max_files {
                    return Err((
                        format!("more than the limit of {} entries", limits.max_files),
                        Some(name),
                    ));
                }
                let kind = meta.file_type();
                if kind.is_dir() {
                    pending.push(relative);
                } else if kind.is_file() {
                    summary.bytes += meta.len();
                    if summary.bytes > limits.max_bytes {
                        return Err((
                            format!("more than the limit of {} bytes", limits.max_bytes),
                            Some(name),
                        ));
                    }
                } else if kind.is_symlink() {
                    if let Err(why) = super::links::resolve_inside(&self.path, &relative) {
                        let target = std::fs::read_link(entry.path()).unwrap_or_default();
                        return Err((
                            format!(
                                "a link to {} that leaves the workspace: {why}",
                                target.display()
                            ),
                            Some(name),
                        ));
                    }
                } else {
                    return Err((
                        "an entry that is not a file, directory or link".into(),
                        Some(name),
                    ));
                }
            }
        }
        Ok(summary)
    }

    /// Moves the staged files into `workspace`: a rename of the whole directory when the workspace
    /// is missing, else of each top-level entry after checking none is already there (an existing
    /// workspace directory is kept: a sandbox may already have it bind-mounted).
    pub fn commit(mut self, workspace: &Path) -> Result<(), StagingError> {
        let io = |what: &str, path: &Path, err: std::io::Error| {
            (format!("{what} {}: {err}", path.display()), None)
        };
        match workspace.symlink_metadata() {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::rename(&self.path, workspace)
                    .map_err(|err| io("cannot move the bundle into", workspace, err))?;
                self.committed = true;
                return Ok(());
            }
            Err(err) => return Err(io("cannot read the workspace", workspace, err)),
            Ok(_) => {}
        }
        let top: Vec<_> = std::fs::read_dir(&self.path)
            .map_err(|err| io("cannot read", &self.path, err))?
            .collect::<Result<_, _>>()
            .map_err(|err| io("cannot read", &self.path, err))?;
        for entry in &top {
            let target = workspace.join(entry.file_name());
            if target.symlink_metadata().is_ok() {
                return Err((
                    "is already in the workspace; the bundle would overwrite it".into(),
                    Some(entry.file_name().to_string_lossy().into_owned()),
                ));
            }
        }
        for entry in &top {
            let target = workspace.join(entry.file_name());
            std::fs::rename(entry.path(), &target)
                .map_err(|err| io("cannot move the bundle entry into", &target, err))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed
            && let Err(err) = std::fs::remove_dir_all(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %err, "could not remove a staging directory");
        }
    }
}

fn entry_name(relative: &Path) -> Option<String> {
    (!relative.as_os_str().is_empty()).then(|| relative.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_staging_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        let staging = Staging::create(&workspace).unwrap();
        let staged = staging.path().to_path_buf();
        std::fs::write(staged.join("f"), "x").unwrap();
        drop(staging);
        assert!(!staged.exists());
        assert!(!workspace.exists());
    }

    #[test]
    fn commit_refuses_to_overwrite_and_leaves_the_workspace_alone() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::write(workspace.join("README"), "mine").unwrap();
        let staging = Staging::create(&workspace).unwrap();
        std::fs::write(staging.path().join("new"), "n").unwrap();
        std::fs::write(staging.path().join("README"), "theirs").unwrap();
        let (message, entry) = staging.commit(&workspace).unwrap_err();
        assert!(message.contains("already in the workspace"), "{message}");
        assert_eq!(entry.as_deref(), Some("README"));
        assert_eq!(
            std::fs::read_to_string(workspace.join("README")).unwrap(),
            "mine"
        );
        assert!(!workspace.join("new").exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "staging removed"
        );
    }

    #[test]
    fn verify_counts_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(&dir.path().join("ws")).unwrap();
        std::fs::create_dir(staging.path().join("d")).unwrap();
        std::fs::write(staging.path().join("d/f"), "12345").unwrap();
        let limits = BundleLimits {
            max_files: 10,
            max_bytes: 100,
        };
        assert_eq!(
            staging.verify(&limits).unwrap(),
            MaterializeSummary { files: 2, bytes: 5 }
        );
        let (message, entry) = staging
            .verify(&BundleLimits {
                max_files: 10,
                max_bytes: 4,
            })
            .unwrap_err();
        assert!(message.contains("4 bytes"), "{message}");
        assert_eq!(entry.as_deref(), Some("d/f"));
        std::os::unix::fs::symlink("/etc/passwd", staging.path().join("escape")).unwrap();
        let (message, entry) = staging.verify(&limits).unwrap_err();
        assert!(message.contains("leaves the workspace"), "{message}");
        assert_eq!(entry.as_deref(), Some("escape"));
    }
}
