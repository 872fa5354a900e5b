//! Writing below the workspace, the one directory the host preopened.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

/// Copy buffer per file.
const COPY_BUFFER: usize = 256 << 10;

pub struct Output {
    root: PathBuf,
    /// The preopened directory, for what std cannot do (symbolic links).
    dir: Descriptor,
    made: HashSet<String>,
    buffer: Vec<u8>,
}

impl Output {
    pub fn open(workspace: &Path) -> Result<Self, String> {
        let wanted = workspace.to_string_lossy();
        let dir = wasip2::filesystem::preopens::get_directories()
            .into_iter()
            .find_map(|(dir, name)| (name == wanted).then_some(dir))
            .ok_or_else(|| format!("the workspace {wanted} is not a preopened directory"))?;
        Ok(Self {
            root: workspace.to_path_buf(),
            dir,
            made: HashSet::new(),
            buffer: vec![0; COPY_BUFFER],
        })
    }

    pub fn dir(&mut self, path: &str) -> Result<(), String> {
        self.parents(path)?;
        self.make_dir(path)
    }

    fn make_dir(&mut self, path: &str) -> Result<(), String> {
        if self.made.contains(path) {
            return Ok(());
        }
        match std::fs::create_dir(self.root.join(path)) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                if !self.root.join(path).is_dir() {
                    return Err(format!("`{path}` exists and is not a directory"));
                }
            }
            Err(err) => return Err(format!("creating the directory `{path}` failed: {err}")),
        }
        self.made.insert(path.to_string());
        Ok(())
    }

    fn parents(&mut self, path: &str) -> Result<(), String> {
        for parent in crate::paths::ancestors(path) {
            self.make_dir(parent)?;
        }
        Ok(())
    }

    /// Writes `content` to `path`, returning its sha256 when `hash` asks for it. Straight
    /// through the preopened descriptor: one `open-at` and one positional `write` per buffer, the
    /// fewest host calls.
    pub fn file(
        &mut self,
        path: &str,
        content: &mut impl Read,
        hash: bool,
    ) -> Result<Option<[u8; 32]>, String> {
        self.parents(path)?;
        let file = self
            .dir
            .open_at(
                PathFlags::empty(),
                path,
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                DescriptorFlags::WRITE,
            )
            .map_err(|err| format!("creating the file failed: {err:?}"))?;
        let mut hasher = hash.then(Sha256::new);
        let mut offset = 0u64;
        loop {
            let n = content
                .read(&mut self.buffer)
                .map_err(|err| format!("reading it from the archive failed: {err}"))?;
            if n == 0 {
                break;
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&self.buffer[..n]);
            }
            let mut written = 0;
            while written < n {
                let wrote = file
                    .write(&self.buffer[written..n], offset)
                    .map_err(|err| format!("writing it failed: {err:?}"))?;
                written += wrote as usize;
                offset += wrote;
            }
        }
        Ok(hasher.map(|hasher| hasher.finalize().into()))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        self.parents(path)?;
        self.dir
            .symlink_at(target, path)
            .map_err(|err| format!("creating the link failed: {err:?}"))
    }
}
