//! Writing below the workspace, the one directory the host preopened.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasip2::filesystem::types::Descriptor;

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

    /// Writes `content` to `path`, returning its sha256.
    pub fn file(&mut self, path: &str, content: &mut impl Read) -> Result<[u8; 32], String> {
        self.parents(path)?;
        let mut file = std::fs::File::create_new(self.root.join(path))
            .map_err(|err| format!("creating the file failed: {err}"))?;
        let mut hasher = Sha256::new();
        loop {
            let n = content
                .read(&mut self.buffer)
                .map_err(|err| format!("reading it from the archive failed: {err}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&self.buffer[..n]);
            file.write_all(&self.buffer[..n])
                .map_err(|err| format!("writing it failed: {err}"))?;
        }
        Ok(hasher.finalize().into())
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        self.parents(path)?;
        self.dir
            .symlink_at(target, path)
            .map_err(|err| format!("creating the link failed: {err:?}"))
    }
}
