//! Building resource bundles (tar + `aac-bundle.json`) for tests and benchmarks, including broken
//! and hostile ones, and serving them from a loopback HTTP server.

use std::net::SocketAddr;
use std::path::Path;

use aac_host::manager::protocol::BundleRef;
use sha2::{Digest, Sha256};

/// One archive entry. Names are written as raw bytes, so hostile paths (`../x`, `/abs`) can be
/// built, which the `tar` crate's own setters refuse.
#[derive(Clone, Debug)]
pub enum Entry {
    File(String, Vec<u8>),
    /// A file whose tar header carries this mode (`0o755`, or a hostile `0o6777`).
    FileWithMode(String, Vec<u8>, u32),
    Dir(String),
    Symlink(String, String),
    HardLink(String, String),
}

impl Entry {
    pub fn file(path: &str, content: impl Into<Vec<u8>>) -> Self {
        Entry::File(path.into(), content.into())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest that matches `entries` exactly.
pub fn manifest_for(entries: &[Entry]) -> serde_json::Value {
    let mut files = Vec::new();
    let mut links = Vec::new();
    for entry in entries {
        match entry {
            Entry::File(path, content) | Entry::FileWithMode(path, content, _) => {
                files.push(serde_json::json!({
                    "path": path, "size": content.len(), "sha256": sha256_hex(content),
                }))
            }
            Entry::Symlink(path, target) => {
                links.push(serde_json::json!({ "path": path, "target": target }))
            }
            _ => {}
        }
    }
    serde_json::json!({ "version": 1, "files": files, "links": links })
}

/// A tar archive: the manifest first, then `entries` in order.
pub fn archive(manifest: &serde_json::Value, entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let manifest = serde_json::to_vec(manifest).unwrap();
    append(
        &mut builder,
        tar::EntryType::Regular,
        "aac-bundle.json",
        None,
        &manifest,
    );
    for entry in entries {
        match entry {
            Entry::File(path, content) => {
                append(&mut builder, tar::EntryType::Regular, path, None, content)
            }
            Entry::FileWithMode(path, content, mode) => append_with_mode(
                &mut builder,
                tar::EntryType::Regular,
                path,
                None,
                content,
                *mode,
            ),
            Entry::Dir(path) => append(&mut builder, tar::EntryType::Directory, path, None, &[]),
            Entry::Symlink(path, target) => append(
                &mut builder,
                tar::EntryType::Symlink,
                path,
                Some(target),
                &[],
            ),
            Entry::HardLink(path, target) => {
                append(&mut builder, tar::EntryType::Link, path, Some(target), &[])
            }
        }
    }
    builder.into_inner().unwrap()
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: Option<&str>,
    content: &[u8],
) {
    let mode = if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    };
    append_with_mode(builder, kind, path, link, content, mode)
}

fn append_with_mode(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: Option<&str>,
    content: &[u8],
    mode: u32,
) {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    let raw = header.as_ustar_mut().unwrap();
    assert!(path.len() <= 100, "test paths fit the ustar name field");
    raw.name = [0; 100];
    raw.name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        raw.linkname = [0; 100];
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    builder.append(&header, content).unwrap();
}

/// Writes `bytes` to `dir/name` and returns an `archive` reference with its hash and size.
pub fn save(dir: &Path, name: &str, bytes: &[u8]) -> BundleRef {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    BundleRef {
        kind: "archive".into(),
        location: path.display().to_string(),
        sha256: Some(sha256_hex(bytes)),
        size: Some(bytes.len() as u64),
    }
}

/// `count` small files spread over directories, as in a source tree.
pub fn many_files(count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| {
            Entry::file(
                &format!("src/mod{:03}/file{i:05}.rs", i % 100),
                format!("// file {i}\npub fn f{i}() -> usize {{ {i} }}\n").repeat(1 + i % 7),
            )
        })
        .collect()
}

/// Serves `body` at `/bundle.tar` on a loopback port until the runtime ends.
pub async fn serve(body: Vec<u8>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/bundle.tar",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Flips one byte inside the first 4 KiB run of `fill` bytes (a file's contents): the archive
/// stays a valid tar of the same size, but no longer hashes to what was pinned.
pub fn damage_contents(bytes: &mut [u8], fill: u8) {
    let run = bytes
        .windows(4096)
        .position(|w| w.iter().all(|b| *b == fill))
        .expect("a run of the fill byte");
    bytes[run + 100] ^= 0x20;
}
