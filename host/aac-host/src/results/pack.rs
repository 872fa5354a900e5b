//! Packing a directory into a resource bundle (docs/bundles.md): a tar whose first entry is the
//! manifest `aac-bundle.json` listing every file's size and sha256, then the files and links.
//!
//! A directory that is the top of a git work tree is packed as `git ls-files -co
//! --exclude-standard` lists it (tracked files plus untracked ones `.gitignore` does not exclude)
//! **and its `.git` directory**, so the workspace is the same repository (agents commit, `git
//! diff` works). Any other directory is packed whole. The archive is deterministic (sorted
//! entries, mtime 0): the same tree gives the same blob.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The manifest's name, the archive's first entry.
pub const MANIFEST: &str = "aac-bundle.json";

/// A packed bundle: its archive file (removed on drop) and what its reference needs.
pub struct PackedBundle {
    pub file: tempfile::NamedTempFile,
    pub sha256: String,
    pub size: u64,
    pub files: usize,
    /// Whether the directory was packed as a git work tree.
    pub git: bool,
}

enum Item {
    File(PathBuf),
    Link(String),
}

/// The sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Whether `dir` is the top of a git work tree.
fn git_top(dir: &Path) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-prefix"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace))
        && dir.join(".git").exists()
}

/// The paths `git ls-files -co --exclude-standard` lists under `dir`.
fn git_listed(dir: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .output()
        .context("could not run git to list the work tree's files")?;
    if !out.status.success() {
        bail!(
            "git ls-files failed in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            String::from_utf8(p.to_vec()).map_err(|_| {
                anyhow::anyhow!(
                    "{:?} is not a UTF-8 path; bundles name files in UTF-8",
                    String::from_utf8_lossy(p)
                )
            })
        })
        .collect()
}

/// Every file and link below `dir/rel`, as bundle paths.
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let here = if rel.is_empty() {
        dir.to_owned()
    } else {
        dir.join(rel)
    };
    for entry in fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("{:?} is not a UTF-8 file name", entry.path()))?;
        let path = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            walk(dir, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// What goes into the bundle, by path.
fn items(dir: &Path) -> Result<(BTreeMap<String, Item>, bool)> {
    let git = git_top(dir);
    let mut paths = Vec::new();
    if git {
        paths = git_listed(dir)?;
        walk(dir, ".git", &mut paths)?;
    } else {
        walk(dir, "", &mut paths)?;
    }
    let mut items = BTreeMap::new();
    for path in paths {
        if path == MANIFEST {
            bail!(
                "{} has a file named {MANIFEST}, the name the bundle's manifest takes",
                dir.display()
            );
        }
        let full = dir.join(&path);
        // Listed by git but deleted in the work tree: not part of the tree as it is.
        let Ok(meta) = fs::symlink_metadata(&full) else {
            continue;
        };
        let item = if meta.file_type().is_symlink() {
            let target = fs::read_link(&full)?;
            let target = target
                .to_str()
                .with_context(|| format!("the link {path} has a target that is not UTF-8"))?
                .to_owned();
            if !link_stays_inside(&path, &target) {
                bail!(
                    "the link {path} points to {target:?}, outside {}: a bundle's links must \
                     stay inside it",
                    dir.display()
                );
            }
            Item::Link(target)
        } else if meta.is_file() {
            Item::File(full)
        } else if meta.is_dir() {
            // A git submodule's directory: its files are not in this repository's listing.
            continue;
        } else {
            bail!(
                "{} is neither a file, a directory nor a link",
                full.display()
            );
        };
        items.insert(path, item);
    }
    Ok((items, git))
}

/// Whether the link at `path` (relative) to `target` resolves inside the bundle, read lexically.
fn link_stays_inside(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            name => depth.push(name),
        }
    }
    true
}

/// Checks that `file` is a bundle archive: a tar whose first entry is the manifest.
pub fn check_archive(file: &Path) -> Result<()> {
    let opened = fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut archive = tar::Archive::new(opened);
    let first = archive
        .entries()
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(|entry| entry.ok())
        .and_then(|entry| entry.path().ok().map(|p| p.to_string_lossy().into_owned()));
    match first {
        Some(name) if name == MANIFEST => Ok(()),
        Some(name) => bail!(
            "{} is not a bundle archive: its first entry is {name:?}, not {MANIFEST} (see \
             docs/bundles.md, or give the directory to pack it)",
            file.display()
        ),
        None => bail!(
            "{} is not a bundle archive: not a tar file (see docs/bundles.md, or give a \
             directory to pack it)",
            file.display()
        ),
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header
}

/// Packs `dir` into a bundle archive in the system's temp directory.
pub fn pack_dir(dir: &Path) -> Result<PackedBundle> {
    let (items, git) = items(dir)?;
    // The entries go to a body file first, hashed as written: the manifest, which comes first,
    // then describes exactly the bytes that follow, even if a file changes meanwhile.
    let body_file = tempfile::tempfile().context("cannot create a temporary file")?;
    let mut body = tar::Builder::new(BufWriter::new(body_file));
    let mut files = Vec::new();
    let mut links = Vec::new();
    for (path, item) in &items {
        match item {
            Item::File(full) => {
                let mut content = Vec::new();
                fs::File::open(full)
                    .and_then(|mut f| f.read_to_end(&mut content))
                    .with_context(|| format!("cannot read {}", full.display()))?;
                let mode = fs::metadata(full).map_or(0o644, |m| {
                    use std::os::unix::fs::PermissionsExt;
                    if m.permissions().mode() & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    }
                });
                let mut h = header(tar::EntryType::Regular, content.len() as u64, mode);
                body.append_data(&mut h, path, content.as_slice())?;
                files.push(serde_json::json!({
                    "path": path,
                    "size": content.len(),
                    "sha256": hex::encode(Sha256::digest(&content)),
                }));
            }
            Item::Link(target) => {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                body.append_link(&mut h, path, target)?;
                links.push(serde_json::json!({"path": path, "target": target}));
            }
        }
    }
    let mut body_file = body
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    // Without the body's end-of-archive blocks: the archive's own end follows.
    let body_len = body_file.stream_position()?.saturating_sub(1024);
    body_file.seek(SeekFrom::Start(0))?;

    let manifest = serde_json::to_vec(&serde_json::json!({
        "version": 1, "files": files, "links": links,
    }))?;
    let out = tempfile::Builder::new()
        .prefix("aac-bundle-")
        .suffix(".tar")
        .tempfile()
        .context("cannot create the bundle file")?;
    {
        let mut archive = tar::Builder::new(BufWriter::new(out.as_file()));
        let mut h = header(tar::EntryType::Regular, manifest.len() as u64, 0o644);
        archive.append_data(&mut h, MANIFEST, manifest.as_slice())?;
        std::io::copy(&mut (&mut body_file).take(body_len), archive.get_mut())?;
        archive.into_inner()?.flush()?;
    }
    let (sha256, size) = sha256_file(out.path())?;
    Ok(PackedBundle {
        file: out,
        sha256,
        size,
        files: files.len(),
        git,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_leave_the_directory_are_refused_when_packing() {
        assert!(link_stays_inside("a/b", "c"));
        assert!(link_stays_inside("a/b", "../c"));
        assert!(!link_stays_inside("a/b", "../../c"));
        assert!(!link_stays_inside("b", "/etc/passwd"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("out")).unwrap();
        let err = pack_dir(dir.path()).err().unwrap();
        assert!(
            format!("{err:#}").contains("the link out points to"),
            "{err:#}"
        );
    }

    #[test]
    fn a_packed_directory_lists_every_file_in_its_manifest_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        std::os::unix::fs::symlink("src/main.rs", dir.path().join("link")).unwrap();
        let packed = pack_dir(dir.path()).unwrap();
        assert!(!packed.git);
        assert_eq!(packed.files, 1);
        check_archive(packed.file.path()).unwrap();
        let mut archive = tar::Archive::new(fs::File::open(packed.file.path()).unwrap());
        let mut entries = archive.entries().unwrap();
        let mut manifest = String::new();
        entries
            .next()
            .unwrap()
            .unwrap()
            .read_to_string(&mut manifest)
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(manifest["files"][0]["path"], "src/main.rs");
        assert_eq!(manifest["links"][0]["target"], "src/main.rs");
        // Packing the same tree again gives the same archive.
        assert_eq!(pack_dir(dir.path()).unwrap().sha256, packed.sha256);
        // A file that is not a bundle is named as such.
        let err = check_archive(&dir.path().join("src/main.rs")).unwrap_err();
        assert!(err.to_string().contains("not a bundle archive"), "{err}");
    }
}
