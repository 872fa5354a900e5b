//! `aac.toml`: runtime profiles, parsed and validated.
//!
//! A runtime profile names a backend plugin, the sandbox images of each version of the agent it
//! drives, and how those sandboxes are limited; a run selects one with `NAME` or `NAME@VERSION`
//! ([`HostConfig::select`]). See `docs/configuration.md` for every key.
//!
//! Every error names the file, the line and the key (`aac.toml:7: runtimes.codex.sandbox.memory:
//! invalid size "4 gigs" (expected e.g. 512MiB or 4GiB)`); it is a [`ConfigError`] inside the
//! `anyhow::Error`. Secret values are never part of a message.

mod credentials;
mod errors;
mod names;
mod network;
mod plugin_settings;
mod raw;
mod secrets;
pub mod units;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use sha2::{Digest, Sha256};

pub use credentials::{CredentialBinding, DEFAULT_HEADER};
pub use errors::ConfigError;
pub use secrets::SecretSource;
pub use units::{format_duration, parse_duration, parse_size};

/// Default of `session_idle_timeout`.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default of `max_session_duration`.
pub const DEFAULT_MAX_SESSION_DURATION: Duration = Duration::from_secs(8 * 3600);

/// The parsed `aac.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostConfig {
    /// The file it was read from (or the name given to [`HostConfig::parse`]).
    pub source: PathBuf,
    /// Runtime profiles by name.
    pub runtimes: BTreeMap<String, RuntimeProfile>,
    /// `[limits]`: plugin limits of every runtime that sets none of its own.
    pub limits: PluginLimits,
    /// `[trust]`: keys plugin signatures are checked against.
    pub trust: TrustSettings,
    /// `[bundles]`: the resource-bundle materializer, when runs carry bundles.
    pub bundles: Option<BundleSettings>,
    /// `[egress] ready_networks`, when written (see [`HostConfig::ready_egress_networks`]).
    pub ready_egress_networks: Option<usize>,
    /// `[docker] concurrent_starts`, when written: containers created and started at once (else
    /// the driver's default, half the host's cores).
    pub concurrent_starts: Option<usize>,
}

/// Egress networks a runner keeps ready when some runtime uses `network = "egress"` and
/// `[egress] ready_networks` is not written.
pub const DEFAULT_READY_EGRESS_NETWORKS: usize = 2;

/// `[trust]` (or a runtime's `trust`, which adds keys): ed25519 public keys, 64 hex digits each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustSettings {
    pub keys: Vec<String>,
    /// Refuse plugins without a valid `<plugin>.sig`.
    pub require_signature: bool,
}

/// `[bundles]`: which materializer writes runs' bundles into workspaces, and its bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleSettings {
    pub plugin: PathBuf,
    pub plugin_sha256: Option<String>,
    /// What the materializer may do (e.g. the hosts bundles are fetched from).
    pub grants: Grants,
    pub limits: BundleLimits,
    /// CPU budget of one `materialize` call.
    pub cpu: Duration,
    /// Wall-clock deadline of one `materialize` call, waiting included.
    pub wall: Duration,
    /// `[trust]` plus `bundles.trust`.
    pub trust: TrustSettings,
}

impl BundleSettings {
    /// The materializer at `plugin` with default bounds and no grants (what `aac-host runner
    /// --bundle-plugin` uses without a `[bundles]` table).
    pub fn for_plugin(plugin: PathBuf) -> Self {
        Self {
            plugin,
            plugin_sha256: None,
            grants: Grants::default(),
            limits: BundleLimits::default(),
            cpu: plugin_settings::DEFAULT_MATERIALIZE_CPU,
            wall: plugin_settings::DEFAULT_MATERIALIZE_WALL,
            trust: TrustSettings::default(),
        }
    }

    pub fn integrity(&self) -> Integrity {
        self.trust.integrity(self.plugin_sha256.as_ref())
    }

    pub fn options(&self) -> MaterializeOptions {
        MaterializeOptions {
            grants: self.grants.clone(),
            bundle_limits: self.limits,
            cpu: Some(self.cpu),
            wall: Some(self.wall),
            cancel: Default::default(),
            arriving: None,
        }
    }
}

/// A runtime and version chosen by a run's selector.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectedRuntime<'a> {
    pub profile: &'a RuntimeProfile,
    pub version: String,
    pub image: String,
}

/// One `[runtimes.NAME]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeProfile {
    pub name: String,
    /// The backend plugin; a relative path is resolved against the config file's directory.
    pub plugin: PathBuf,
    /// Pin of the plugin file: 64 lowercase hex digits.
    pub plugin_sha256: Option<String>,
    /// Always a key of `versions`.
    pub default_version: String,
    /// Never empty.
    pub versions: BTreeMap<String, VersionProfile>,
    pub sandbox: SandboxSettings,
    /// Environment of every process in the sandbox.
    pub env: BTreeMap<String, String>,
    /// Environment variables of the sandbox whose values are read on the host at run time.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Secrets bound to a destination: the sandbox sees a placeholder under the name, the egress
    /// gateway adds the value on the way out (egress network only).
    pub credentials: BTreeMap<String, CredentialBinding>,
    /// Sandboxes kept started and ready for this runtime's default version.
    pub warm_pool: u32,
    pub session_idle_timeout: Duration,
    pub max_session_duration: Duration,
    pub pull_policy: PullPolicy,
    /// What the plugin itself may do; empty (nothing) unless granted.
    pub grants: Grants,
    /// `backend_config = { … }`: the backend configuration (a JSON object) every run of this
    /// runtime starts from; a run's own config overrides its top-level keys.
    pub backend_config: serde_json::Value,
    /// `[limits]` with the runtime's own `limits` applied.
    pub limits: PluginLimits,
    /// `[trust]` with the runtime's own `trust` applied.
    pub trust: TrustSettings,
    /// 1-based line of the profile in [`HostConfig::source`], for messages.
    pub line: usize,
}

/// One `versions."X"` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionProfile {
    /// The sandbox image, e.g. `aac/codex:0.169.0`.
    pub image: String,
}

/// `sandbox = { … }`: limits and identity of the runtime's sandboxes. An unset limit means the
/// sandbox driver's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SandboxSettings {
    /// CPUs (fractional allowed), > 0.
    pub cpus: Option<f64>,
    /// Memory limit in bytes (swap is not allowed beyond it), at least [`MIN_MEMORY_BYTES`].
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes, > 0.
    pub pids: Option<i64>,
    pub network: NetworkMode,
    /// With `network = { mode = "egress", allow = [...] }`: what the sandbox may reach (nothing
    /// when empty).
    pub egress_allow: aac_egress::Allowlist,
    /// `hosts = { "name" = "IP" }` of an egress network: the proxy's fixed answers for these names.
    pub egress_hosts: BTreeMap<String, std::net::IpAddr>,
    /// `uid:gid`, `uid`, `name` or `name:group`; never root.
    pub user: Option<String>,
    /// The engine's OCI runtime for the sandbox (`runsc`: gVisor); the engine's default when unset.
    pub runtime: Option<String>,
}

/// Docker refuses a memory limit below 6 MiB.
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// The sandbox's network and pull policy are the sandbox module's own types.
pub use crate::sandbox::{NetworkMode, PullPolicy};

use crate::plugin::{BundleLimits, Integrity, MaterializeOptions, PluginLimits};

/// `grants = { … }`: what the plugin itself may do, besides driving its sandbox (`http` hosts and
/// host `env` variables, never a secret). The plugin host's capability set: a capability is used
/// only if the plugin declares it and it is granted here; the default grants nothing.
pub use crate::plugin::Capabilities as Grants;

impl HostConfig {
    /// How many egress networks a runner serving this file keeps ready: none when no runtime
    /// uses `network = "egress"`, else `[egress] ready_networks` (default
    /// [`DEFAULT_READY_EGRESS_NETWORKS`]).
    pub fn ready_egress_networks(&self) -> usize {
        let egress = self
            .runtimes
            .values()
            .any(|runtime| runtime.sandbox.network == NetworkMode::Egress);
        if egress {
            self.ready_egress_networks
                .unwrap_or(DEFAULT_READY_EGRESS_NETWORKS)
        } else {
            0
        }
    }

    /// Reads and validates `path`. Every error names the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("could not read config file {}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `source` names it in errors and anchors relative paths.
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        raw::parse(text, source)
    }

    /// The runtime and version a run asks for: `"codex"` (its default version) or `"codex@0.169"`.
    /// An unknown runtime or version is an error listing the known ones.
    pub fn select(&self, selector: &str) -> Result<SelectedRuntime<'_>> {
        let (name, version) = match selector.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (selector, None),
        };
        if name.is_empty() || version.is_some_and(str::is_empty) {
            bail!("invalid runtime selector {selector:?} (expected NAME or NAME@VERSION)");
        }
        let profile = self.runtimes.get(name).ok_or_else(|| {
            let known = self.runtimes.keys().map(String::as_str).collect::<Vec<_>>();
            ConfigError {
                file: self.source.clone(),
                line: None,
                key: Some(errors::key_path(&["runtimes", name])),
                message: format!("no runtime {name:?} (known: {})", list(&known)),
            }
        })?;
        let version = version.unwrap_or(&profile.default_version);
        let entry = profile.versions.get(version).ok_or_else(|| {
            let known = profile
                .versions
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>();
            ConfigError {
                file: self.source.clone(),
                line: Some(profile.line),
                key: Some(errors::key_path(&["runtimes", name, "versions"])),
                message: format!(
                    "no version {version:?} of runtime {name} (known: {})",
                    list(&known)
                ),
            }
        })?;
        Ok(SelectedRuntime {
            profile,
            version: version.to_string(),
            image: entry.image.clone(),
        })
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl RuntimeProfile {
    /// Reads every secret from the host environment or its file, as `(NAME, value)` pairs for the
    /// sandbox's environment. Errors name the secret and where it was looked for, never a value.
    pub fn resolve_secrets(&self) -> Result<Vec<(String, String)>> {
        self.resolve_secrets_with(|var| std::env::var_os(var))
    }

    /// [`Self::resolve_secrets`] with environment variables looked up by `lookup`.
    pub fn resolve_secrets_with(
        &self,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Vec<(String, String)>> {
        self.secrets
            .iter()
            .map(|(key, source)| Ok((key.clone(), source.resolve(key, &self.name, &lookup)?)))
            .collect()
    }

    /// Reads every bound credential's value from the host environment or its file.
    pub fn resolve_credentials(&self) -> Result<Vec<aac_egress::Credential>> {
        self.resolve_credentials_with(|var| std::env::var_os(var))
    }

    /// [`Self::resolve_credentials`] with environment variables looked up by `lookup`.
    pub fn resolve_credentials_with(
        &self,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Vec<aac_egress::Credential>> {
        self.credentials
            .iter()
            .map(|(name, binding)| binding.resolve(name, &self.name, &lookup))
            .collect()
    }

    /// What the runtime's plugin file must satisfy: its pin and the trusted keys.
    pub fn integrity(&self) -> Integrity {
        self.trust.integrity(self.plugin_sha256.as_ref())
    }

    /// Checks `bytes` (the plugin file) against `plugin_sha256`, when one is set.
    pub fn verify_plugin(&self, bytes: &[u8]) -> Result<()> {
        let Some(expected) = &self.plugin_sha256 else {
            return Ok(());
        };
        let actual = hex::encode(Sha256::digest(bytes));
        if &actual != expected {
            bail!(
                "plugin {} of runtime {} has sha256 {actual}, but plugin_sha256 pins {expected}",
                self.plugin.display(),
                self.name
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod docker_settings_tests;
#[cfg(test)]
mod tests;
