//! The bundle manifest: `aac-bundle.json`, the archive's first entry.
//!
//! ```json
//! {"version": 1, "files": [{"path": "src/main.rs", "size": 120, "sha256": "<64 hex>"}],
//!  "links": [{"path": "latest", "target": "v2"}]}
//! ```

use std::collections::HashMap;

use aac_sdk::MaterializeError;
use serde::Deserialize;

pub const NAME: &str = "aac-bundle.json";
/// A manifest larger than this is refused before it is parsed.
pub const MAX_BYTES: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub links: Vec<LinkEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    pub path: String,
    pub target: String,
}

/// What the manifest expects of each entry, by normalized path.
pub enum Expected {
    File { size: u64, sha256: [u8; 32] },
    Link { target: String },
}

/// Errors about the manifest as a whole name the manifest; errors about a listed path name it.
pub fn parse(bytes: &[u8]) -> Result<HashMap<String, Expected>, MaterializeError> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|err| MaterializeError::at_entry(NAME, format!("invalid manifest: {err}")))?;
    if manifest.version != 1 {
        return Err(MaterializeError::at_entry(
            NAME,
            format!(
                "manifest version {} is not supported (expected 1)",
                manifest.version
            ),
        ));
    }
    let mut expected = HashMap::with_capacity(manifest.files.len() + manifest.links.len());
    for file in manifest.files {
        let sha256 = parse_sha256(&file.sha256).ok_or_else(|| {
            MaterializeError::at_entry(
                &file.path,
                format!("invalid sha256 {:?} in the manifest", file.sha256),
            )
        })?;
        let path = crate::paths::normalize(&file.path)
            .map_err(|err| MaterializeError::at_entry(&file.path, err))?;
        if expected
            .insert(
                path.clone(),
                Expected::File {
                    size: file.size,
                    sha256,
                },
            )
            .is_some()
        {
            return Err(MaterializeError::at_entry(
                path,
                "listed twice in the manifest",
            ));
        }
    }
    for link in manifest.links {
        let path = crate::paths::normalize(&link.path)
            .map_err(|err| MaterializeError::at_entry(&link.path, err))?;
        if !crate::paths::link_stays_inside(&path, &link.target) {
            return Err(MaterializeError::at_entry(
                path,
                format!(
                    "a symbolic link to `{}`, which leaves the workspace",
                    link.target
                ),
            ));
        }
        if expected
            .insert(
                path.clone(),
                Expected::Link {
                    target: link.target,
                },
            )
            .is_some()
        {
            return Err(MaterializeError::at_entry(
                path,
                "listed twice in the manifest",
            ));
        }
    }
    Ok(expected)
}

pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
