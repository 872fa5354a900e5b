//! The first-party resource-bundle materializer.
//!
//! A bundle is a tar archive whose first entry is `aac-bundle.json`, a manifest of every file
//! (path, size, sha256) and link. It comes from the host (`archive`: a local file handed over
//! through the `archive` interface) or over `wasi:http` (`http`: a URL on a host the operator
//! granted). The whole archive is checked against the bundle reference's sha256 and size; a
//! bundle whose reference pins no sha256 has every file hashed as it is written and checked
//! against the manifest instead (a pinned archive's hash already covers every byte of every file,
//! and hashing them again in wasm was the largest part of a big bundle's time). Sizes, paths and
//! the manifest's list are checked either way. Paths are relative and stay
//! below the workspace; links that leave it, hard links, oversize bundles, too many entries and any
//! mismatch are errors naming the entry. The host discards everything written on an error. A file
//! whose tar header has an execute bit is made executable through the host's `modes` (0o755);
//! setuid, setgid and sticky bits are never carried over.

mod manifest;
mod paths;
mod source;
mod write;

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::path::Path;

use aac_sdk::{BundleLimits, BundleRef, BundleSource, MaterializeError, Materializer, Summary};
use sha2::Digest;

use manifest::Expected;
use source::Hashing;

aac_sdk::declare_capabilities!(http: ["*"]);

/// Bytes read from the source at a time: tar reads in 512-byte blocks, the host in large chunks.
const READ_BUFFER: usize = 1 << 20;

struct Bundle;

impl Materializer for Bundle {
    fn materialize(
        bundle: BundleRef,
        workspace: &Path,
        limits: BundleLimits,
    ) -> Result<Summary, MaterializeError> {
        let expected_sha256 = match &bundle.sha256 {
            Some(hex) => Some(
                manifest::parse_sha256(&hex.to_ascii_lowercase()).ok_or_else(|| {
                    MaterializeError::new(format!(
                        "the bundle's sha256 {hex:?} is not 64 hex digits"
                    ))
                })?,
            ),
            None => None,
        };
        let over_http = matches!(bundle.kind, BundleSource::Http(_));
        let source: Box<dyn Read> = match &bundle.kind {
            BundleSource::Archive(_) => Box::new(aac_sdk::archive::Reader::new()),
            BundleSource::Http(url) => {
                Box::new(source::http_get(url).map_err(MaterializeError::new)?)
            }
        };
        // The host verifies a local archive it hands over (natively, over exactly the bytes it
        // served); a bundle fetched over HTTP is verified here.
        let reader = Hashing::new(
            BufReader::with_capacity(READ_BUFFER, source),
            bundle.size.unwrap_or(u64::MAX),
            over_http,
        );
        let mut extractor = Extractor::new(workspace, limits, expected_sha256.is_none())?;
        let reader = extractor.extract(reader)?;
        if let Some(size) = bundle.size
            && reader.bytes != size
        {
            return Err(MaterializeError::new(format!(
                "the bundle is {} bytes, but its reference says {size}",
                reader.bytes
            )));
        }
        let digest: Option<[u8; 32]> = reader.hasher.map(|hasher| hasher.finalize().into());
        if let (Some(expected), Some(digest)) = (expected_sha256, digest)
            && digest != expected
        {
            return Err(MaterializeError::new(format!(
                "the bundle's sha256 is {}, but its reference says {}",
                manifest::to_hex(&digest),
                manifest::to_hex(&expected)
            )));
        }
        Ok(Summary {
            files: extractor.files,
            bytes: extractor.bytes,
        })
    }
}

aac_sdk::export_materializer!(Bundle);

/// Walks the archive once, writing as it goes.
struct Extractor {
    out: write::Output,
    limits: BundleLimits,
    files: u64,
    bytes: u64,
    seen: HashSet<String>,
    links: HashSet<String>,
    /// Whether each file's sha256 is computed and checked against the manifest: only when the
    /// reference pins no hash of the whole archive.
    hash_files: bool,
}

impl Extractor {
    fn new(
        workspace: &Path,
        limits: BundleLimits,
        hash_files: bool,
    ) -> Result<Self, MaterializeError> {
        Ok(Self {
            hash_files,
            out: write::Output::open(workspace).map_err(MaterializeError::new)?,
            limits,
            files: 0,
            bytes: 0,
            seen: HashSet::new(),
            links: HashSet::new(),
        })
    }

    /// Extracts everything, then reads the source to its end so its hash covers all of it.
    fn extract<R: Read>(&mut self, mut reader: Hashing<R>) -> Result<Hashing<R>, MaterializeError> {
        let damaged = |err: std::io::Error| {
            MaterializeError::new(format!("the archive cannot be read: {err}"))
        };
        {
            let mut archive = tar::Archive::new(&mut reader);
            let mut entries = archive.entries().map_err(damaged)?;
            let mut first = entries
                .next()
                .ok_or_else(|| MaterializeError::new("the archive is empty: no manifest"))?
                .map_err(damaged)?;
            let mut expected = read_manifest(&mut first)?;
            drop(first);
            for entry in entries {
                let mut entry = entry.map_err(damaged)?;
                self.entry(&mut entry, &mut expected)?;
            }
            if let Some(missing) = expected.keys().min() {
                return Err(MaterializeError::at_entry(
                    missing.clone(),
                    "listed in the manifest but missing from the archive",
                ));
            }
        }
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(damaged)?;
        Ok(reader)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        expected: &mut HashMap<String, Expected>,
    ) -> Result<(), MaterializeError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = paths::normalize(&raw).map_err(|m| MaterializeError::at_entry(&raw, m))?;
        let at = |message: String| MaterializeError::at_entry(path.clone(), message);
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(at(format!(
                "the bundle has more than the limit of {} entries",
                self.limits.max_files
            )));
        }
        if let Some(link) = paths::ancestors(&path).find(|a| self.links.contains(*a)) {
            return Err(at(format!("it lies below the link `{link}`")));
        }
        if !self.seen.insert(path.clone()) {
            return Err(at("it appears twice in the archive".into()));
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            return self.out.dir(&path).map_err(at);
        }
        let link_target = || {
            entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default()
        };
        if kind.is_hard_link() {
            return Err(at(format!(
                "a hard link (to `{}`): hard links are not allowed in a bundle",
                link_target()
            )));
        }
        if kind.is_symlink() {
            let target = link_target();
            if !paths::link_stays_inside(&path, &target) {
                return Err(at(format!(
                    "a symbolic link to `{target}`, which leaves the workspace"
                )));
            }
            match expected.remove(&path) {
                Some(Expected::Link { target: listed }) if listed == target => {}
                Some(Expected::Link { target: listed }) => {
                    return Err(at(format!(
                        "a link to `{target}`, but the manifest says `{listed}`"
                    )));
                }
                _ => return Err(at("a link that is not in the manifest's links".into())),
            }
            self.links.insert(path.clone());
            return self.out.symlink(&path, &target).map_err(at);
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            return Err(at(format!(
                "an entry of type {:?}: only files, directories and links are allowed",
                kind
            )));
        }
        let (size, sha256) = match expected.remove(&path) {
            Some(Expected::File { size, sha256 }) => (size, sha256),
            Some(Expected::Link { .. }) => {
                return Err(at("a file, but the manifest lists a link".into()));
            }
            None => return Err(at("a file that is not in the manifest".into())),
        };
        let actual_size = entry.size();
        if actual_size != size {
            return Err(at(format!(
                "{actual_size} bytes, but the manifest says {size}"
            )));
        }
        self.bytes += size;
        if self.bytes > self.limits.max_bytes {
            return Err(at(format!(
                "the bundle's files exceed the limit of {} bytes",
                self.limits.max_bytes
            )));
        }
        // Only the executable bit matters (what git records); a header without a readable mode
        // is a plain file.
        let executable = entry
            .header()
            .mode()
            .is_ok_and(aac_sdk::modes::is_executable);
        let digest = self.out.file(&path, entry, self.hash_files).map_err(at)?;
        if let Some(digest) = digest
            && digest != sha256
        {
            return Err(at(format!(
                "hash mismatch: its sha256 is {}, but the manifest says {}",
                manifest::to_hex(&digest),
                manifest::to_hex(&sha256)
            )));
        }
        if executable {
            aac_sdk::modes::set_executable(&path, true).map_err(at)?;
        }
        Ok(())
    }
}

fn read_manifest<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<HashMap<String, Expected>, MaterializeError> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if paths::normalize(&raw).ok().as_deref() != Some(manifest::NAME)
        || !entry.header().entry_type().is_file()
    {
        return Err(MaterializeError::at_entry(
            raw,
            format!(
                "the archive's first entry must be the manifest `{}`",
                manifest::NAME
            ),
        ));
    }
    if entry.size() > manifest::MAX_BYTES {
        return Err(MaterializeError::at_entry(
            manifest::NAME,
            format!("the manifest is larger than {} bytes", manifest::MAX_BYTES),
        ));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|err| MaterializeError::at_entry(manifest::NAME, err.to_string()))?;
    manifest::parse(&bytes)
}
