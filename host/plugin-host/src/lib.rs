//! aac-plugin-host owns running WebAssembly plugins: the engine, the compiled-artifact cache,
//! validation, limits, integrity, the host capabilities, the backend and materializer worlds, text
//! bounds, failure classification and the masking of secrets in what plugins emit ([`redact`]). It
//! drives sandboxes through `aac-sandbox`'s traits only and speaks `aac-protocol`'s failure
//! taxonomy; it must not depend on bollard, the manager or the wire protocol's types.
//!
//! The plugin host: one wasmtime engine, compiled-artifact cache, validation, limits, and one module
//! per host capability offered to plugins.
//!
//! ```text
//! PluginHost::load_backend(path) ─ validate ─ cache/compile ─ InstancePre ─ describe()
//!        └─ BackendPlugin::open_session(run, sandbox, events) ─ Store per session
//!               └─ BackendSession::run_turn(command, cancel) -> TurnOutcome
//! PluginHost::load_materializer(path, integrity) ─ integrity ─ validate ─ compile ─ describe()
//!        └─ MaterializerPlugin::materialize(bundle, workspace, options) -> MaterializeSummary
//! ```

mod backend;
pub mod bindings;
mod cache;
pub mod capability;
mod deadline;
mod describe;
mod engine;
mod failure;
mod guest;
pub mod integrity;
mod limits;
pub mod materializer;
pub mod redact;
mod state;
mod stderr_tail;
pub mod text;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use backend::{BackendPlugin, BackendSession, SessionOptions};
pub use bindings::ContractVersion;
pub use cache::{ArtifactCache, CacheState};
pub use capability::declared::Capabilities;
pub use integrity::{Integrity, IntegrityReport, TrustedKey};
pub use limits::PluginLimits;
pub use materializer::{
    Bundle, BundleLimits, MaterializeFailure, MaterializeOptions, MaterializeSummary,
    MaterializerPlugin,
};
pub use validate::{ComponentShape, World};

use engine::EpochTicker;
use limits::PacedPlugins;
use state::{BackendWorld, MaterializerWorld, SessionState, WorldState};

/// Who a plugin is, for every message that concerns it.
#[derive(Clone, Debug, Serialize)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
}

impl fmt::Display for PluginIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` {} ({})",
            self.name,
            self.version,
            self.path.display()
        )
    }
}

/// Settings of a [`PluginHost`].
#[derive(Clone, Debug)]
pub struct PluginHostConfig {
    /// Where compiled artifacts are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub limits: PluginLimits,
}

impl Default for PluginHostConfig {
    fn default() -> Self {
        Self {
            cache_dir: ArtifactCache::default_dir(),
            limits: PluginLimits::default(),
        }
    }
}

/// What `aac-host plugin inspect` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    #[serde(flatten)]
    pub shape: ComponentShape,
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// `hit` when a compiled artifact was already cached before this inspection.
    pub cache: CacheState,
    pub cache_artifact: Option<PathBuf>,
    /// Declared by the plugin; granted by the operator and effective once a runtime is known.
    pub capabilities: CapabilityReport,
    /// The integrity checks that passed, once a configuration says what to check.
    pub integrity: Option<IntegrityReport>,
}

/// Declared, granted and effective capabilities of a plugin, for `plugin inspect`.
#[derive(Clone, Debug, Serialize)]
pub struct CapabilityReport {
    pub declared: Capabilities,
    /// `None` when no runtime profile was given.
    pub granted: Option<Capabilities>,
    pub effective: Option<Capabilities>,
}

impl Inspection {
    /// Fills in what `grants` (a runtime's, or the materializer's) give this plugin.
    pub fn with_grants(mut self, grants: &Capabilities) -> Self {
        let caps = &mut self.capabilities;
        caps.granted = Some(Capabilities::granted(grants));
        caps.effective = Some(Capabilities::effective(&caps.declared, grants));
        self
    }

    /// Checks the file against `integrity` (pin, signature); a refusal is the error.
    pub fn with_integrity(mut self, integrity: &Integrity) -> Result<Self> {
        let bytes = std::fs::read(&self.path)
            .with_context(|| format!("could not read plugin file {}", self.path.display()))?;
        self.integrity = Some(integrity::check(&self.path, &bytes, integrity)?);
        Ok(self)
    }
}

/// A plugin file read, checked and compiled.
struct LoadedComponent {
    component: wasmtime::component::Component,
    shape: ComponentShape,
    cache: CacheState,
    declared: Capabilities,
}

/// Loads and runs plugins. Cheap to share: clone the `Arc`.
pub struct PluginHost {
    engine: Engine,
    cache: ArtifactCache,
    /// One linker per world and contract version, built once: every plugin of that world and
    /// version is linked against it.
    backend_linker: Linker<SessionState<BackendWorld>>,
    materializer_linker: Linker<SessionState<MaterializerWorld>>,
    backend_linker_v0_1: Linker<SessionState<BackendWorld>>,
    materializer_linker_v0_1: Linker<SessionState<MaterializerWorld>>,
    limits: PluginLimits,
    /// The host's plugins past their CPU burst, sharing `limits.paced_cpu`.
    paced: PacedPlugins,
    /// The process starts of sessions past their burst, sharing `limits.paced_process_starts`.
    paced_starts: capability::sandbox::PacedStarts,
    _ticker: EpochTicker,
}

impl PluginHost {
    pub fn new(config: PluginHostConfig) -> Result<Arc<Self>> {
        let engine = engine::new_engine(&config.limits)?;
        let backend_linker = world_linker(&engine, |linker| {
            bindings::backend::Backend::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
        })?;
        let materializer_linker = world_linker(&engine, |linker| {
            bindings::materializer::Materializer::add_to_linker::<_, HasSelf<_>>(linker, |state| {
                state
            })
        })?;
        let backend_linker_v0_1 = world_linker(&engine, |linker| {
            bindings::since_v0_1_0::backend::Backend::add_to_linker::<_, HasSelf<_>>(
                linker,
                |state| state,
            )
        })?;
        let materializer_linker_v0_1 = world_linker(&engine, |linker| {
            bindings::since_v0_1_0::materializer::Materializer::add_to_linker::<_, HasSelf<_>>(
                linker,
                |state| state,
            )
        })?;
        Ok(Arc::new(Self {
            cache: ArtifactCache::new(&engine, config.cache_dir),
            _ticker: EpochTicker::start(&engine),
            engine,
            backend_linker,
            materializer_linker,
            backend_linker_v0_1,
            materializer_linker_v0_1,
            paced: PacedPlugins::new(config.limits.paced_cpu),
            paced_starts: capability::sandbox::PacedStarts::new(config.limits.paced_process_starts),
            limits: config.limits,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Reads and validates a plugin file, then loads its compiled form (from cache when possible).
    fn load_component(&self, path: &Path, integrity: &Integrity) -> Result<LoadedComponent> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("could not read plugin file {}", path.display()))?;
        integrity::check(path, &bytes, integrity)?;
        let shape = validate::check_component(path, &bytes)?;
        let declared = capability::declared::read_declared(&bytes).with_context(|| {
            format!(
                "plugin {} declares its capabilities wrongly",
                path.display()
            )
        })?;
        let (component, cache) = self.cache.load(&self.engine, &bytes, path)?;
        Ok(LoadedComponent {
            component,
            shape,
            cache,
            declared,
        })
    }

    /// Whether the compiled artifact of the plugin at `path` is already cached.
    pub fn is_cached(&self, path: &Path) -> bool {
        std::fs::read(path).is_ok_and(|bytes| self.cache.is_cached(&bytes))
    }

    /// Loads a resource-bundle materializer after checking the file's integrity (sha256 pin,
    /// signature) and asks it to describe itself.
    pub async fn load_materializer(
        self: &Arc<Self>,
        path: &Path,
        integrity: &Integrity,
    ) -> Result<MaterializerPlugin> {
        let loaded = self.load_component(path, integrity)?;
        if loaded.shape.world != World::Materializer {
            anyhow::bail!(
                "{} is a {} plugin, but a materializer was expected",
                path.display(),
                loaded.shape.world.as_str()
            );
        }
        MaterializerPlugin::new(
            self.clone(),
            path,
            loaded.shape.contract,
            loaded.component,
            loaded.declared,
        )
        .await
    }

    /// Loads a backend adapter and asks it to describe itself.
    pub async fn load_backend(self: &Arc<Self>, path: &Path) -> Result<BackendPlugin> {
        self.load_backend_checked(path, &Integrity::default()).await
    }

    /// [`Self::load_backend`] after checking the file's integrity (sha256 pin, signature), e.g.
    /// with a runtime profile's `integrity()`.
    pub async fn load_backend_checked(
        self: &Arc<Self>,
        path: &Path,
        integrity: &Integrity,
    ) -> Result<BackendPlugin> {
        let LoadedComponent {
            component,
            shape,
            cache,
            declared,
        } = self.load_component(path, integrity)?;
        if shape.world != World::Backend {
            anyhow::bail!(
                "{} is a {} plugin, but a backend adapter was expected",
                path.display(),
                shape.world.as_str()
            );
        }
        BackendPlugin::new(
            self.clone(),
            path,
            shape.contract,
            component,
            cache,
            declared,
        )
        .await
    }

    /// Everything `plugin inspect` shows about a plugin file.
    pub async fn inspect(self: &Arc<Self>, path: &Path) -> Result<Inspection> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("could not read plugin file {}", path.display()))?;
        let shape = validate::check_component(path, &bytes)?;
        let was_cached = self.cache.is_cached(&bytes);
        let cache_artifact = self.cache.artifact_path(&bytes);
        let declared = capability::declared::read_declared(&bytes).with_context(|| {
            format!(
                "plugin {} declares its capabilities wrongly",
                path.display()
            )
        })?;
        let (identity, description) = match shape.world {
            World::Backend => {
                let backend = self.load_backend(path).await?;
                (
                    backend.identity().clone(),
                    backend.description().to_string(),
                )
            }
            World::Materializer => {
                let materializer = self.load_materializer(path, &Integrity::default()).await?;
                (
                    materializer.identity().clone(),
                    materializer.description().to_string(),
                )
            }
        };
        Ok(Inspection {
            path: path.to_path_buf(),
            name: Some(identity.name.clone()),
            version: Some(identity.version.clone()),
            description: Some(description),
            shape,
            cache: if was_cached {
                CacheState::Hit
            } else {
                CacheState::Miss
            },
            cache_artifact,
            capabilities: CapabilityReport {
                declared,
                granted: None,
                effective: None,
            },
            integrity: None,
        })
    }
}

/// A linker for one world: WASI and wasi:http, which every world gets, then the world's own
/// interfaces (`add_world`, one line per world).
fn world_linker<W: WorldState>(
    engine: &Engine,
    add_world: impl FnOnce(&mut Linker<SessionState<W>>) -> wasmtime::Result<()>,
) -> Result<Linker<SessionState<W>>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // Always linked, so a plugin that uses wasi:http loads; the allowlist hook refuses every
    // request unless hosts are both declared and granted.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    add_world(&mut linker)?;
    Ok(linker)
}
