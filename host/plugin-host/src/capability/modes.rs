//! `aac:plugin/modes` (since 0.2.1): the executable bit of files a materializer wrote. WASI has no
//! chmod; the host sets modes itself, confined to the staging directory of the current call.
//!
//! The path is checked component by component without following anything: no absolute path, no
//! `..`, no symbolic link on the way, and the last entry a regular file. The plugin is suspended
//! while its host call runs and nothing else writes into the staging directory, so what was
//! checked is what gets changed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::bindings::materializer::aac::plugin::modes::Host;
use crate::state::{MaterializerWorld, SessionState};
use crate::text::{cut, terminal_safe};

/// Executable files get exactly this mode, others [`PLAIN`]: never setuid, setgid or sticky.
pub const EXECUTABLE: u32 = 0o755;
pub const PLAIN: u32 = 0o644;

/// The staging directory of the current `materialize` call; none outside a call.
#[derive(Default)]
pub struct ModesCapability {
    root: Option<PathBuf>,
}

impl ModesCapability {
    pub fn new(root: &Path) -> Self {
        Self {
            root: Some(root.to_path_buf()),
        }
    }

    /// Sets `path` (relative to the staging directory) to [`EXECUTABLE`] or [`PLAIN`].
    pub fn set_executable(&self, path: &str, executable: bool) -> Result<(), String> {
        let shown = terminal_safe(&cut(path, 256)).into_owned();
        let refuse = |why: &str| Err(format!("cannot set the mode of `{shown}`: {why}"));
        let Some(root) = &self.root else {
            return refuse("modes can only be set during a materialize call");
        };
        if path.is_empty() {
            return refuse("the path is empty");
        }
        // The whole path is checked by its text first, then walked without following links.
        let mut names = Vec::new();
        for component in Path::new(path).components() {
            match component {
                Component::Normal(name) => names.push(name),
                Component::CurDir => {}
                Component::ParentDir => return refuse("`..` is not allowed"),
                Component::RootDir | Component::Prefix(_) => {
                    return refuse("an absolute path; give it relative to the workspace directory");
                }
            }
        }
        if names.is_empty() {
            return refuse("the path names the workspace itself");
        }
        let mut current = root.clone();
        for (index, name) in names.iter().enumerate() {
            current.push(name);
            let meta = match current.symlink_metadata() {
                Ok(meta) => meta,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return refuse("no such file in the workspace");
                }
                Err(err) => return refuse(&format!("cannot read it: {err}")),
            };
            let kind = meta.file_type();
            if kind.is_symlink() {
                return refuse("a symbolic link is on the path (links are not followed)");
            }
            if index + 1 == names.len() {
                if !kind.is_file() {
                    return refuse("not a regular file");
                }
            } else if !kind.is_dir() {
                return refuse("a component of the path is not a directory");
            }
        }
        let mode = if executable { EXECUTABLE } else { PLAIN };
        std::fs::set_permissions(&current, std::fs::Permissions::from_mode(mode))
            .or_else(|err| refuse(&format!("chmod failed: {err}")))
    }
}

impl Host for SessionState<MaterializerWorld> {
    async fn set_executable(
        &mut self,
        path: String,
        executable: bool,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.world.modes.set_executable(&path, executable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        path.symlink_metadata().unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn sets_and_clears_the_bit_on_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("staging");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("bin/run.sh"),
            std::fs::Permissions::from_mode(0o4600),
        )
        .unwrap();
        let modes = ModesCapability::new(&root);
        modes.set_executable("bin/run.sh", true).unwrap();
        assert_eq!(mode(&root.join("bin/run.sh")), 0o755);
        modes.set_executable("./bin/run.sh", false).unwrap();
        assert_eq!(mode(&root.join("bin/run.sh")), 0o644);
        let err = modes.set_executable("bin", true).unwrap_err();
        assert!(err.contains("`bin`: not a regular file"), "{err}");
    }

    #[test]
    fn refuses_escapes_links_and_calls_outside_materialize() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("staging");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(root.join("inside"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink("inside", root.join("link-in")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dir-link")).unwrap();
        let modes = ModesCapability::new(&root);
        for (path, why) in [
            ("../outside", "`..` is not allowed"),
            ("sub/../../outside", "`..` is not allowed"),
            (outside.to_str().unwrap(), "an absolute path"),
            ("link", "symbolic link"),
            ("link-in", "symbolic link"),
            ("dir-link/outside", "symbolic link"),
            ("missing", "no such file"),
            ("", "empty"),
            (".", "the workspace itself"),
            ("inside/x", "not a directory"),
        ] {
            let err = modes.set_executable(path, true).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        assert_eq!(mode(&outside), 0o600, "the file outside is untouched");
        assert_ne!(mode(&root.join("inside")) & 0o111, 0o111);
        let err = ModesCapability::default()
            .set_executable("inside", true)
            .unwrap_err();
        assert!(err.contains("during a materialize call"), "{err}");
    }
}
