//! Resource-bundle materializers: a plugin that writes a run's files into its workspace, once per
//! run before the first command.
//!
//! ```text
//! PluginHost::load_materializer(path, integrity) ─ validate ─ compile ─ describe()
//!   └─ MaterializerPlugin::materialize(bundle, workspace, options)
//!        staging dir beside the workspace ─ fresh Store: WASI with only the staging dir preopened,
//!        env = effective env, wasi:http through the effective allowlist, archive = the bundle file,
//!        modes = chmod +x/-x of regular files below the staging dir (WASI has no chmod)
//!        ─ materialize() ─ host re-checks what was written ─ moved into the workspace
//!        (on any failure the staging dir is removed: the workspace is never touched)
//! ```

mod arrival;
mod bundle;
mod guest;
mod links;
mod staging;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::bindings::ContractVersion;
use super::bindings::backend::aac::plugin::types::PluginInfo;
use super::bindings::materializer::exports::aac::plugin::materialize as wit;
use super::capability::archive::ArchiveCapability;
use super::capability::declared::Capabilities;
use super::capability::http::HttpCapability;
use super::capability::log::LogCapability;
use super::capability::modes::ModesCapability;
use super::deadline::bounded;
use super::describe::describe;
use super::failure::{check_result_size, classify};
use super::limits::PluginLimits;
use super::state::{MaterializerWorld, SessionState, denied_wasi, limited_store};
use super::{PluginHost, PluginIdentity};
use crate::redact::Redactor;
use aac_protocol::outcome::FailureKind;
use guest::MaterializerGuestPre;

pub use arrival::{ArchiveArrival, ArrivalWriter, arrival};
pub use bundle::Bundle;
pub use staging::Staging;

/// Where the workspace appears inside the plugin: the one preopened directory.
pub const GUEST_WORKSPACE: &str = "/workspace";

/// Bounds on one bundle, set by the operator (`[bundles]` in `aac.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BundleLimits {
    /// Most entries (files, directories, links).
    pub max_files: u64,
    /// Most bytes of file contents, all files together.
    pub max_bytes: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_files: 100_000,
            max_bytes: 4 << 30,
        }
    }
}

/// What one `materialize` call may use.
#[derive(Clone, Debug, Default)]
pub struct MaterializeOptions {
    /// What the operator granted the materializer; the plugin gets declared ∧ granted.
    pub grants: Capabilities,
    pub bundle_limits: BundleLimits,
    /// CPU time of the plugin's own code for the whole call; the host's `call_cpu` when `None`.
    pub cpu: Option<Duration>,
    /// Wall-clock time of the whole call, waiting included; the host's `call_wall` when `None`.
    pub wall: Option<Duration>,
    /// Cancelling it ends the call (run cancelled, shutdown); the workspace is left as it was.
    pub cancel: CancellationToken,
    /// Set when the `archive` bundle's file is still being downloaded: the plugin reads it as it
    /// arrives, and the materialization fails if the download does.
    pub arriving: Option<ArchiveArrival>,
}

/// A bundle written into the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MaterializeSummary {
    pub files: u64,
    pub bytes: u64,
}

/// Why a bundle could not be materialized. The workspace was left as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct MaterializeFailure {
    /// `resource-bundle` when the bundle (or its source) is at fault; `backend-crashed`,
    /// `backend-timeout` or `resource-exhausted` when the plugin itself misbehaved.
    pub kind: FailureKind,
    /// Names the plugin, the bundle and (when there is one) the entry.
    pub message: String,
    /// The bundle entry at fault.
    pub entry: Option<String>,
}

impl MaterializeFailure {
    fn bundle(message: String, entry: Option<String>) -> Self {
        Self {
            kind: FailureKind::ResourceBundle,
            message,
            entry,
        }
    }
}

/// A loaded materializer: compiled, linked and described.
pub struct MaterializerPlugin {
    host: Arc<PluginHost>,
    pre: MaterializerGuestPre,
    identity: Arc<PluginIdentity>,
    description: String,
    declared: Capabilities,
}

impl MaterializerPlugin {
    pub(crate) async fn new(
        host: Arc<PluginHost>,
        path: &Path,
        contract: ContractVersion,
        component: Component,
        declared: Capabilities,
    ) -> Result<Self> {
        let identity = PluginIdentity {
            name: path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into()),
            version: "unknown".into(),
            path: path.to_path_buf(),
        };
        let linkers = (&host.materializer_linker, &host.materializer_linker_v0_1);
        let pre =
            MaterializerGuestPre::new(contract, linkers, &component).map_err(|(step, err)| {
                match step {
                    "link" => {
                        anyhow::anyhow!("{identity} cannot be linked against this host: {err}")
                    }
                    _ => {
                        anyhow::anyhow!("{identity} does not export the materializer world: {err}")
                    }
                }
            })?;
        let mut plugin = Self {
            host,
            pre,
            identity: Arc::new(identity.clone()),
            description: String::new(),
            declared,
        };
        let store = plugin.new_store(plugin.host.limits(), None)?;
        let pre = plugin.pre.clone();
        // Boxed: the loading future is nested deep in its callers' futures already.
        let info = Box::pin(describe(
            &mut plugin.identity,
            store,
            move |store| {
                Box::pin(async move {
                    let guest = pre.instantiate(&mut *store).await?;
                    guest.describe(store).await
                })
            },
            |info: &PluginInfo| [&info.name, &info.version, &info.description].map(String::as_str),
        ))
        .await?;
        plugin.description = info.description;
        Ok(plugin)
    }

    pub fn identity(&self) -> &Arc<PluginIdentity> {
        &self.identity
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// What the plugin declares it needs (its `aac:capabilities` section).
    pub fn declared(&self) -> &Capabilities {
        &self.declared
    }

    /// A Store for one call: WASI grants nothing but what `grant` adds.
    fn new_store(
        &self,
        limits: PluginLimits,
        grant: Option<(&Path, &Capabilities, ArchiveCapability)>,
    ) -> Result<Store<SessionState<MaterializerWorld>>> {
        let mut state = SessionState::new(
            self.identity.clone(),
            &limits,
            self.host.paced.clone(),
            LogCapability::new("materialize".into(), 16 << 10, Redactor::default()),
            MaterializerWorld {
                archive: ArchiveCapability::default(),
                modes: ModesCapability::default(),
            },
        );
        if let Some((staging, effective, archive)) = grant {
            state.wasi = materializer_wasi(&state, staging, effective)?;
            state.world.archive = archive;
            state.world.modes = ModesCapability::new(staging);
            state.http = HttpCapability::new(self.identity.to_string(), effective.clone());
        }
        Ok(limited_store(self.host.engine(), state))
    }

    /// Writes `bundle` into `workspace`. The plugin writes into a staging directory beside the
    /// workspace (the only directory it can see); the host checks what was written and moves it in
    /// only on success, so on failure the workspace is exactly as it was.
    pub async fn materialize(
        &self,
        bundle: &Bundle,
        workspace: &Path,
        options: &MaterializeOptions,
    ) -> Result<MaterializeSummary, MaterializeFailure> {
        let span = info_span!("materialize", plugin = %self.identity.name, kind = %bundle.kind, location = %bundle.location);
        self.materialize_inner(bundle, workspace, options)
            .instrument(span)
            .await
    }

    async fn materialize_inner(
        &self,
        bundle: &Bundle,
        workspace: &Path,
        options: &MaterializeOptions,
    ) -> Result<MaterializeSummary, MaterializeFailure> {
        let who = self.identity.to_string();
        // Every message names the bundle and the plugin.
        let what = format!("bundle {} `{}` ({who})", bundle.kind, bundle.location);
        let host_error = |err: anyhow::Error| MaterializeFailure {
            kind: FailureKind::HostError,
            message: format!("materializing {what}: {err:#}"),
            entry: None,
        };
        let source = match bundle.kind.as_str() {
            "archive" => wit::BundleSource::Archive(bundle.location.clone()),
            "http" => wit::BundleSource::Http(bundle.location.clone()),
            other => {
                return Err(MaterializeFailure::bundle(
                    format!(
                        "{what}: unknown bundle kind `{}` (a materializer reads `archive` or `http`)",
                        crate::text::terminal_safe(&crate::text::cut(other, 64))
                    ),
                    None,
                ));
            }
        };
        let archive = match bundle.kind.as_str() {
            "archive" => {
                // A file still arriving is checked against its size once it is whole.
                let size = bundle.size.filter(|_| options.arriving.is_none());
                let file = open_archive(Path::new(&bundle.location), size)
                    .map_err(|err| MaterializeFailure::bundle(format!("{what}: {err:#}"), None))?;
                ArchiveCapability::new(file, options.arriving.clone())
            }
            _ => ArchiveCapability::default(),
        };
        let effective = Capabilities::effective(&self.declared, &options.grants);
        let staging = Staging::create(workspace).map_err(host_error)?;

        let mut limits = self.host.limits();
        // A materializer's work is CPU (hashing, unpacking), once, before the run's sandbox
        // starts: it is bounded by its CPU budget, not held to a share of a core.
        limits.cpu_share = 1.0;
        if let Some(cpu) = options.cpu {
            limits.call_cpu = cpu;
        }
        let wall = options.wall.unwrap_or(limits.call_wall);
        let mut store = self
            .new_store(limits, Some((staging.path(), &effective, archive)))
            .map_err(host_error)?;
        store.data_mut().start_call();
        let wit_bundle = wit::BundleRef {
            kind: source,
            sha256: bundle.sha256.clone(),
            size: bundle.size,
        };
        let wit_limits = wit::BundleLimits {
            max_files: options.bundle_limits.max_files,
            max_bytes: options.bundle_limits.max_bytes,
        };
        let mut arriving = options.arriving.clone();
        // Boxed: the guest's versioned calls would make this future too deep for its callers'.
        let calling = Box::pin(async {
            let guest = self.pre.instantiate(&mut store).await?;
            let result = guest
                .materialize(&mut store, &wit_bundle, GUEST_WORKSPACE, wit_limits)
                .await;
            // The archive is checked whole: wait for the rest of it (within the same deadline).
            if let (Some(arrival), Ok(Ok(_))) = (arriving.as_mut(), &result) {
                let _ = arrival.finished().await;
            }
            result
        });
        // Stopped, the call's stack is dropped and so is the staging directory (on return).
        let called = bounded(calling, wall, &options.cancel)
            .await
            .map_err(|stopped| {
                let setting = match options.wall {
                    Some(_) => "[bundles] wall",
                    None => "[limits] call_wall",
                };
                let outcome = stopped.outcome(&self.identity, "materialize", setting);
                MaterializeFailure {
                    kind: outcome.failure_kind.unwrap_or(FailureKind::HostError),
                    message: format!(
                        "{what} was not materialized: {}",
                        outcome.message.unwrap_or_default()
                    ),
                    entry: None,
                }
            })?;
        // A download that failed is the cause, whatever the plugin made of the bytes it lacked.
        if let Some(why) = options.arriving.as_ref().and_then(ArchiveArrival::failure) {
            return Err(MaterializeFailure::bundle(
                format!("{what}: the archive did not arrive whole: {why}"),
                None,
            ));
        }
        let result = match called {
            Ok(result) => result,
            Err(err) => {
                let outcome = classify(store.data(), "materialize", &err);
                return Err(MaterializeFailure {
                    kind: outcome.failure_kind.unwrap_or(FailureKind::BackendCrashed),
                    message: format!(
                        "{what} was not materialized: {}",
                        outcome.message.unwrap_or_default()
                    ),
                    entry: None,
                });
            }
        };
        if let Err(err) = &result
            && let Err(outcome) = check_result_size(
                store.data(),
                "materialize",
                [Some(&err.message), err.entry.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
        {
            return Err(MaterializeFailure {
                kind: FailureKind::ResourceExhausted,
                message: outcome.message.unwrap_or_default(),
                entry: None,
            });
        }
        let summary = match result {
            Ok(summary) => summary,
            Err(err) => {
                let mut message = format!("{what}: refused by the plugin: ");
                if let Some(entry) = &err.entry {
                    message.push_str(&format!("entry `{entry}`: "));
                }
                message.push_str(&err.message);
                let refused = store.data().http.refused();
                if !refused.is_empty() {
                    message.push_str(&format!(
                        " (HTTP to {} refused: not in the effective allowlist [{}]; grant it in aac.toml `grants.http` of the materializer)",
                        refused.join(", "),
                        store.data().http.allowed().join(", ")
                    ));
                }
                return Err(MaterializeFailure::bundle(message, err.entry));
            }
        };
        // A local archive is verified by the host over exactly the bytes the plugin read.
        store
            .data_mut()
            .world
            .archive
            .verify(bundle.size, bundle.sha256.as_deref())
            .map_err(|message| MaterializeFailure::bundle(format!("{what}: {message}"), None))?;
        drop(store);
        // The plugin's word is not trusted: count and check what is really there.
        let at_entry = |entry: &Option<String>| {
            entry
                .as_ref()
                .map(|e| format!("entry `{e}`: "))
                .unwrap_or_default()
        };
        let written = staging
            .verify(&options.bundle_limits)
            .map_err(|(message, entry)| {
                MaterializeFailure::bundle(
                    format!("{what}: the plugin wrote {}{message}", at_entry(&entry)),
                    entry,
                )
            })?;
        debug!(
            files = written.files,
            bytes = written.bytes,
            claimed_files = summary.files,
            "bundle staged"
        );
        staging.commit(workspace).map_err(|(message, entry)| {
            MaterializeFailure::bundle(format!("{what}: {}{message}", at_entry(&entry)), entry)
        })?;
        Ok(written)
    }
}

/// WASI for a materialize call: the staging directory as the workspace (read-write), the effective
/// environment variables, no args, no sockets; stderr captured for crash messages.
fn materializer_wasi(
    state: &SessionState<MaterializerWorld>,
    staging: &Path,
    effective: &Capabilities,
) -> Result<WasiCtx> {
    let mut builder = denied_wasi(&state.stderr);
    builder
        // File writes are the whole job: doing them on this thread avoids a blocking-pool hop per
        // call, which dominates for bundles of many small files.
        .allow_blocking_current_thread(true);
    for var in &effective.env {
        if let Some(value) = std::env::var_os(var).and_then(|v| v.into_string().ok()) {
            builder.env(var, value);
        }
    }
    builder
        .preopened_dir(staging, GUEST_WORKSPACE, FsPerms::ReadWrite)
        .map_err(|err| anyhow::anyhow!("could not preopen {}: {err}", staging.display()))?;
    Ok(builder.build())
}

/// Opens a local archive; a size that differs from the reference fails before the plugin runs.
fn open_archive(path: &Path, size: Option<u64>) -> Result<std::fs::File> {
    let file = std::fs::File::open(path)
        .map_err(|err| anyhow::anyhow!("cannot open the archive {}: {err}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        anyhow::bail!("the archive {} is not a regular file", path.display());
    }
    if let Some(expected) = size
        && meta.len() != expected
    {
        anyhow::bail!(
            "the archive is {} bytes, but its reference says {expected}",
            meta.len()
        );
    }
    Ok(file)
}
