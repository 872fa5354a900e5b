//! Which plugin and which sandbox a run gets: a [`RunProfile`], resolved from the run's backend
//! profile (`codex@0.169`) by the runtime profiles of `aac.toml`, or fixed by the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::config::{
    DEFAULT_MAX_SESSION_DURATION, DEFAULT_SESSION_IDLE_TIMEOUT, Grants, HostConfig,
};
use crate::plugin::PluginLimits;
use crate::plugin::integrity::Integrity;
use crate::sandbox::{NetworkMode, PullPolicy, ResourceLimits};

/// The image `cargo xtask image` builds, used when none is given.
pub const DEFAULT_IMAGE: &str = "aac/busybox:latest";

/// Everything a run's session needs besides the run itself.
#[derive(Clone, Debug)]
pub struct RunProfile {
    /// Runtime name and version, written on containers (`shell`, `codex@0.169`).
    pub runtime: String,
    pub plugin: PathBuf,
    pub image: String,
    pub limits: ResourceLimits,
    pub network: NetworkMode,
    /// What an `egress` sandbox may reach (nothing when empty).
    pub egress_allow: std::sync::Arc<aac_egress::Allowlist>,
    /// How the egress proxy resolves names (the profile's fixed `hosts` first).
    pub egress_resolver: aac_egress::Resolver,
    /// Secrets the egress gateway adds on the way out; the sandbox holds placeholders.
    pub credentials: std::sync::Arc<aac_egress::Credentials>,
    pub pull_policy: PullPolicy,
    /// The engine's OCI runtime for the sandbox (`runsc`: gVisor); its default when `None`.
    pub oci_runtime: Option<String>,
    /// Environment of the sandbox's processes.
    pub env: Vec<(String, String)>,
    /// Secrets for the sandbox's processes: never visible to the plugin, masked in events and logs.
    pub secrets: Vec<(String, String)>,
    /// `uid:gid` of the sandbox's processes; the caller's own (1000:1000 for root) when `None`.
    pub user: Option<String>,
    /// The session ends when no command arrives for this long.
    pub idle_timeout: Duration,
    /// The session ends (its turn stopped as `turn-timeout`) after this long in all.
    pub max_duration: Duration,
    /// Started sandboxes kept ready for this profile (pool mode only).
    pub warm_pool: u32,
    /// Limits of the plugin itself; the host's when `None`.
    pub plugin_limits: Option<PluginLimits>,
    /// What the plugin may do besides driving its sandbox (declared ∧ granted).
    pub grants: Grants,
    /// Pin and signature checks of the plugin file.
    pub integrity: Integrity,
    /// Backend configuration every run starts from (a JSON object); the run's config overrides
    /// its top-level keys.
    pub backend_config: serde_json::Value,
}

impl RunProfile {
    /// A profile with the secure defaults: no network, 2 CPUs, 2 GiB, 512 pids, local images only.
    pub fn new(plugin: PathBuf) -> Self {
        let runtime = plugin
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        Self {
            runtime,
            plugin,
            image: DEFAULT_IMAGE.into(),
            limits: ResourceLimits::default(),
            network: NetworkMode::None,
            egress_allow: Default::default(),
            egress_resolver: Default::default(),
            credentials: Default::default(),
            pull_policy: PullPolicy::Never,
            oci_runtime: None,
            env: Vec::new(),
            secrets: Vec::new(),
            user: None,
            idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            max_duration: DEFAULT_MAX_SESSION_DURATION,
            warm_pool: 0,
            plugin_limits: None,
            grants: Grants::default(),
            integrity: Integrity::default(),
            backend_config: serde_json::json!({}),
        }
    }

    /// The profile `selector` (`NAME` or `NAME@VERSION`) picks in `config`: reads the secrets, so
    /// a bad profile fails before any sandbox starts. The plugin's pin and signature are checked
    /// when it is loaded.
    pub fn from_config(config: &HostConfig, selector: &str) -> Result<Self> {
        let selected = config.select(selector)?;
        let profile = selected.profile;
        let defaults = ResourceLimits::default();
        Ok(Self {
            runtime: format!("{}@{}", profile.name, selected.version),
            plugin: profile.plugin.clone(),
            image: selected.image.clone(),
            limits: ResourceLimits {
                cpus: profile.sandbox.cpus.or(defaults.cpus),
                memory_bytes: profile.sandbox.memory_bytes.or(defaults.memory_bytes),
                pids: profile.sandbox.pids.or(defaults.pids),
            },
            network: profile.sandbox.network,
            egress_allow: std::sync::Arc::new(profile.sandbox.egress_allow.clone()),
            egress_resolver: profile
                .sandbox
                .egress_hosts
                .iter()
                .fold(aac_egress::Resolver::default(), |resolver, (name, ip)| {
                    resolver.with_fixed(name, vec![*ip])
                }),
            credentials: std::sync::Arc::new(aac_egress::Credentials::new(
                profile.resolve_credentials()?,
            )),
            pull_policy: profile.pull_policy,
            oci_runtime: profile.sandbox.runtime.clone(),
            env: profile.env.clone().into_iter().collect(),
            secrets: profile.resolve_secrets()?,
            user: profile.sandbox.user.clone(),
            idle_timeout: profile.session_idle_timeout,
            max_duration: profile.max_session_duration,
            warm_pool: profile.warm_pool,
            plugin_limits: Some(profile.limits),
            grants: profile.grants.clone(),
            integrity: profile.integrity(),
            backend_config: profile.backend_config.clone(),
        })
    }
}

impl RunProfile {
    /// The backend configuration of a run with `run_config`: the profile's, with the run's
    /// top-level keys over it.
    pub fn config_for(&self, run_config: &serde_json::Value) -> serde_json::Value {
        let mut merged = match &self.backend_config {
            serde_json::Value::Object(base) => base.clone(),
            _ => serde_json::Map::new(),
        };
        match run_config {
            serde_json::Value::Object(overrides) => {
                merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            serde_json::Value::Null => {}
            other => return other.clone(),
        }
        serde_json::Value::Object(merged)
    }
}

/// Where a runner finds the profile of a run.
#[derive(Clone, Debug)]
pub enum Profiles {
    /// Every run gets this profile (`--plugin PATH` and sandbox flags).
    Fixed(RunProfile),
    /// A run's backend profile selects a runtime of `aac.toml`.
    Config(HostConfig),
}

impl Profiles {
    /// The profile of a run whose backend profile is `backend`.
    pub fn resolve(&self, backend: &str) -> Result<RunProfile> {
        match self {
            Profiles::Fixed(profile) => Ok(profile.clone()),
            Profiles::Config(config) => RunProfile::from_config(config, backend),
        }
    }

    /// The backend profiles this runner can serve, for `claim-next`; `None` means any.
    pub fn backends(&self) -> Option<Vec<String>> {
        match self {
            Profiles::Fixed(_) => None,
            Profiles::Config(config) => Some(
                config
                    .runtimes
                    .values()
                    .flat_map(|profile| {
                        std::iter::once(profile.name.clone()).chain(
                            profile
                                .versions
                                .keys()
                                .map(move |version| format!("{}@{version}", profile.name)),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const TOML: &str = r#"
[runtimes.codex]
plugin = "codex.wasm"
default_version = "0.169"
versions."0.169".image = "aac/codex:0.169.0"
backend_config = { model = "gpt-5.5", provider = { base_url = "http://10.0.0.1/v1" }, idle_timeout_ms = 60000 }
"#;

    #[test]
    fn a_runs_config_overrides_the_profiles_backend_config_key_by_key() {
        let config = HostConfig::parse(TOML, Path::new("aac.toml")).unwrap();
        let profile = RunProfile::from_config(&config, "codex").unwrap();
        assert_eq!(profile.runtime, "codex@0.169");
        let merged = profile.config_for(&serde_json::json!({ "model": "mock-model" }));
        assert_eq!(
            merged,
            serde_json::json!({
                "model": "mock-model",
                "provider": { "base_url": "http://10.0.0.1/v1" },
                "idle_timeout_ms": 60000,
            })
        );
        assert_eq!(
            profile.config_for(&serde_json::Value::Null),
            profile.backend_config
        );
    }

    #[test]
    fn a_backend_config_that_is_not_a_table_is_refused_with_its_key() {
        let text = TOML.replace(
            "backend_config = { model",
            "backend_config = \"gpt\"\nunused = { model",
        );
        let err = HostConfig::parse(&text, Path::new("aac.toml")).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("aac.toml:"), "{message}");
        assert!(message.contains("backend_config"), "{message}");
    }

    #[test]
    fn backends_lists_runtimes_with_and_without_version() {
        let config = HostConfig::parse(TOML, Path::new("aac.toml")).unwrap();
        let backends = Profiles::Config(config).backends().unwrap();
        assert_eq!(backends, ["codex", "codex@0.169"]);
    }
}
