//! Compiled plugin artifacts, cached on disk by content hash and engine settings, so a plugin is
//! compiled once per host build rather than once per start.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load found a compiled artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheState {
    /// Loaded from the cache: nothing was compiled.
    Hit,
    /// Compiled now and stored for next time.
    Miss,
    /// Compiled now; caching is off.
    Disabled,
}

pub struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache under `dir`, or none. Artifacts of other wasmtime versions or engine settings live
    /// under other keys and are never loaded.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The default cache directory: `$AAC_CACHE_DIR`, else `$XDG_CACHE_HOME/aac-host`, else
    /// `~/.cache/aac-host`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("AAC_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("aac-host"))
    }

    /// Where the artifact for `wasm` lives, whether or not it exists yet.
    pub fn artifact_path(&self, wasm: &[u8]) -> Option<PathBuf> {
        let digest = hex::encode(Sha256::digest(wasm));
        self.dir.as_ref().map(|dir| {
            dir.join("plugins")
                .join(format!("{digest}-{}.cwasm", self.engine_key))
        })
    }

    pub fn is_cached(&self, wasm: &[u8]) -> bool {
        self.artifact_path(wasm).is_some_and(|path| path.is_file())
    }

    /// Loads the compiled component for `wasm`, compiling and storing it on a miss.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        source: &Path,
    ) -> Result<(Component, CacheState)> {
        let Some(artifact) = self.artifact_path(wasm) else {
            return Ok((compile(engine, wasm, source)?, CacheState::Disabled));
        };
        if artifact.is_file() {
            // SAFETY: the artifact was written by `Component::serialize` of an engine with the same
            // compatibility hash (part of the file name), into a directory this host owns.
            match unsafe { Component::deserialize_file(engine, &artifact) } {
                Ok(component) => {
                    debug!(artifact = %artifact.display(), "plugin loaded from cache");
                    return Ok((component, CacheState::Hit));
                }
                Err(err) => warn!(
                    artifact = %artifact.display(),
                    error = %err,
                    "cached plugin artifact is unusable; recompiling"
                ),
            }
        }
        let component = compile(engine, wasm, source)?;
        if let Err(err) = store(&component, &artifact) {
            warn!(artifact = %artifact.display(), error = %format!("{err:#}"), "could not cache the compiled plugin");
        }
        Ok((component, CacheState::Miss))
    }
}

fn compile(engine: &Engine, wasm: &[u8], source: &Path) -> Result<Component> {
    Component::new(engine, wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("could not compile {}", source.display()))
}

/// Writes atomically, so a concurrent loader never sees half an artifact.
fn store(component: &Component, artifact: &Path) -> Result<()> {
    let dir = artifact.parent().context("artifact path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, artifact)
        .with_context(|| format!("renaming into {}", artifact.display()))?;
    Ok(())
}
