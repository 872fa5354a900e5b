//! Integrity of plugin files: an optional sha256 pin and optional ed25519 signatures
//! (`plugin.wasm.sig` beside the file) checked against the operator's trusted keys. A refusal
//! names the plugin file and the reason.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a plugin file must satisfy before it is compiled.
#[derive(Clone, Debug, Default)]
pub struct Integrity {
    /// Expected sha256 of the file, lowercase hex.
    pub sha256: Option<String>,
    /// Trusted public keys; a signature is accepted if one of them verifies it.
    pub keys: Vec<TrustedKey>,
    /// Refuse a plugin without a valid signature.
    pub require_signature: bool,
}

/// An ed25519 public key the operator trusts, with a name for messages.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub name: String,
    pub key: VerifyingKey,
}

impl TrustedKey {
    /// A key from 64 hex digits (the 32 bytes of an ed25519 public key).
    pub fn from_hex(name: impl Into<String>, hex_key: &str) -> Result<Self> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("not an ed25519 public key: expected 64 hex digits"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|err| anyhow::anyhow!("not a valid ed25519 public key: {err}"))?;
        Ok(Self {
            name: name.into(),
            key,
        })
    }
}

/// What the checks found, for `plugin inspect`.
#[derive(Clone, Debug, Serialize)]
pub struct IntegrityReport {
    pub sha256: String,
    /// Whether a pin was set (and so matched).
    pub pinned: bool,
    /// The signature file, when there is one.
    pub signature_file: Option<PathBuf>,
    /// The trusted key that verified the signature.
    pub signed_by: Option<String>,
}

/// The signature file of a plugin: `<file>.sig` beside it.
pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Checks `bytes` (read from `path`) against `integrity`.
pub fn check(path: &Path, bytes: &[u8], integrity: &Integrity) -> Result<IntegrityReport> {
    let file = path.display();
    let sha256 = hex::encode(Sha256::digest(bytes));
    if let Some(expected) = &integrity.sha256
        && &sha256 != expected
    {
        bail!(
            "plugin {file} refused: its sha256 is {sha256}, but the configuration pins {expected}"
        );
    }
    let sig_path = signature_path(path);
    let signature = match std::fs::read(&sig_path) {
        Ok(raw) => Some(parse_signature(&raw).map_err(|err| {
            anyhow::anyhow!(
                "plugin {file} refused: its signature {} {err}",
                sig_path.display()
            )
        })?),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => bail!(
            "plugin {file} refused: its signature {} cannot be read: {err}",
            sig_path.display()
        ),
    };
    let mut signed_by = None;
    match &signature {
        Some(signature) if !integrity.keys.is_empty() => {
            let key = integrity
                .keys
                .iter()
                .find(|trusted| trusted.key.verify(bytes, signature).is_ok());
            match key {
                Some(key) => signed_by = Some(key.name.clone()),
                None => bail!(
                    "plugin {file} refused: its signature {} is not valid for any trusted key ({}); \
                     the file was changed after signing or signed by another key",
                    sig_path.display(),
                    integrity
                        .keys
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        Some(_) if integrity.require_signature => bail!(
            "plugin {file} refused: signatures are required but no trusted keys are configured \
             ([trust] keys in aac.toml)"
        ),
        None if integrity.require_signature => bail!(
            "plugin {file} refused: signatures are required and {} does not exist",
            sig_path.display()
        ),
        // Signed, but nothing to check it against and nothing required: accepted as unsigned.
        _ => {}
    }
    Ok(IntegrityReport {
        sha256,
        pinned: integrity.sha256.is_some(),
        signature_file: signature.map(|_| sig_path),
        signed_by,
    })
}

/// A signature file holds the 64 signature bytes, raw (as `openssl pkeyutl -sign` writes them) or
/// as 128 hex digits.
fn parse_signature(raw: &[u8]) -> Result<Signature> {
    let bytes: Vec<u8> = if raw.len() == Signature::BYTE_SIZE {
        raw.to_vec()
    } else {
        let text = std::str::from_utf8(raw)
            .map_err(|_| anyhow::anyhow!("is neither 64 raw bytes nor hex"))?;
        hex::decode(text.trim())
            .map_err(|_| anyhow::anyhow!("is neither 64 raw bytes nor 128 hex digits"))?
    };
    let bytes: [u8; Signature::BYTE_SIZE] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("does not hold an ed25519 signature (64 bytes)"))?;
    Ok(Signature::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn key(seed: u8) -> (SigningKey, TrustedKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let trusted = TrustedKey::from_hex(
            format!("key{seed}"),
            &hex::encode(signing.verifying_key().as_bytes()),
        )
        .unwrap();
        (signing, trusted)
    }

    fn plugin_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn a_signature_by_a_trusted_key_is_accepted_in_raw_or_hex() {
        let (signing, trusted) = key(1);
        let (_dir, path) = plugin_file(b"component");
        let integrity = Integrity {
            keys: vec![key(2).1, trusted],
            require_signature: true,
            ..Default::default()
        };
        let sig = signing.sign(b"component").to_bytes();
        std::fs::write(signature_path(&path), sig).unwrap();
        let report = check(&path, b"component", &integrity).unwrap();
        assert_eq!(report.signed_by.as_deref(), Some("key1"));
        std::fs::write(signature_path(&path), hex::encode(sig) + "\n").unwrap();
        assert!(check(&path, b"component", &integrity).is_ok());
    }

    #[test]
    fn a_changed_file_or_an_untrusted_key_is_refused_by_name() {
        let (signing, _) = key(1);
        let (_dir, path) = plugin_file(b"component");
        std::fs::write(signature_path(&path), signing.sign(b"component").to_bytes()).unwrap();
        let integrity = Integrity {
            keys: vec![key(2).1],
            ..Default::default()
        };
        let err = check(&path, b"component", &integrity)
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.wasm refused"), "{err}");
        assert!(
            err.contains("not valid for any trusted key (key2)"),
            "{err}"
        );
        let integrity = Integrity {
            keys: vec![key(1).1],
            ..Default::default()
        };
        let err = check(&path, b"componenT", &integrity)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid"), "{err}");
    }

    #[test]
    fn required_signatures_and_pins() {
        let (_dir, path) = plugin_file(b"component");
        let required = Integrity {
            keys: vec![key(1).1],
            require_signature: true,
            ..Default::default()
        };
        let err = check(&path, b"component", &required)
            .unwrap_err()
            .to_string();
        assert!(err.contains("signatures are required"), "{err}");
        assert!(err.contains("p.wasm.sig does not exist"), "{err}");

        let pinned = Integrity {
            sha256: Some("00".repeat(32)),
            ..Default::default()
        };
        let err = check(&path, b"component", &pinned).unwrap_err().to_string();
        assert!(err.contains("but the configuration pins 0000"), "{err}");
        assert!(check(&path, b"component", &Integrity::default()).is_ok());
        std::fs::write(signature_path(&path), "garbage").unwrap();
        let err = check(&path, b"component", &required)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither 64 raw bytes nor 128 hex digits"),
            "{err}"
        );
    }
}
