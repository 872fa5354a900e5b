//! The file as toml sees it (with spans), and its validation into [`HostConfig`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;

use super::credentials::RawCredential;
use super::errors::{self, ConfigError};
use super::names::{check_user, invalid_env_name, is_env_name, is_runtime_name, is_version};
use super::network::RawNetwork;
use super::plugin_settings::{RawBundles, RawLimits, RawTrust};
use super::units::{ByteSize, HumanDuration};
use super::{
    DEFAULT_MAX_SESSION_DURATION, DEFAULT_SESSION_IDLE_TIMEOUT, Grants, HostConfig,
    MIN_MEMORY_BYTES, NetworkMode, PullPolicy, RuntimeProfile, SandboxSettings, SecretSource,
    TrustSettings, VersionProfile,
};
use crate::plugin::PluginLimits;
use crate::sandbox::docker::{MAX_CONCURRENT_STARTS, MAX_READY_NETWORKS};
use aac_egress::Allowlist;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    runtimes: BTreeMap<Spanned<String>, Spanned<RawProfile>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    trust: RawTrust,
    bundles: Option<RawBundles>,
    #[serde(default)]
    egress: RawEgress,
    #[serde(default)]
    docker: RawDocker,
}

/// `[docker]`: host-wide settings of the Docker engine's use.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    concurrent_starts: Option<Spanned<u64>>,
}

/// `[egress]`: host-wide settings of egress sandboxes.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    ready_networks: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    plugin: Spanned<String>,
    plugin_sha256: Option<Spanned<String>>,
    default_version: Spanned<String>,
    versions: Option<Spanned<BTreeMap<Spanned<String>, RawVersion>>>,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    secrets: BTreeMap<Spanned<String>, Spanned<SecretSource>>,
    #[serde(default)]
    credentials: BTreeMap<Spanned<String>, Spanned<RawCredential>>,
    #[serde(default)]
    warm_pool: u32,
    session_idle_timeout: Option<Spanned<HumanDuration>>,
    max_session_duration: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pull_policy: PullPolicy,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    trust: RawTrust,
    /// Backend configuration every run of the runtime starts from (JSON-like).
    #[serde(default)]
    backend_config: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    image: Spanned<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    cpus: Option<Spanned<f64>>,
    memory: Option<Spanned<ByteSize>>,
    pids: Option<Spanned<i64>>,
    network: Option<Spanned<RawNetwork>>,
    user: Option<Spanned<String>>,
    runtime: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrants {
    #[serde(default)]
    http: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
}

pub(super) fn parse(text: &str, source: &Path) -> Result<HostConfig> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| errors::from_toml(&e, text, source.to_path_buf()))?;
    let checker = Checker {
        text,
        source,
        dir: source.parent().unwrap_or(Path::new("")),
        secret_vars: secret_vars(&raw.runtimes),
    };
    if raw.runtimes.is_empty() {
        return Err(ConfigError {
            file: source.to_path_buf(),
            line: None,
            key: Some("runtimes".into()),
            message: "no runtimes defined (add a [runtimes.NAME] table)".into(),
        }
        .into());
    }
    let limits = checker.limits(raw.limits, &["limits"], PluginLimits::default(), None)?;
    let trust = checker.trust(raw.trust, &["trust"], &TrustSettings::default())?;
    let bundles = raw
        .bundles
        .map(|bundles| checker.bundles(bundles, &trust))
        .transpose()?;
    let ready_egress_networks = match raw.egress.ready_networks {
        Some(count) if *count.get_ref() > MAX_READY_NETWORKS as u64 => {
            return Err(checker.error(
                count.span(),
                &["egress", "ready_networks"],
                format!(
                    "{} is too many: at most {MAX_READY_NETWORKS} egress networks can be kept ready",
                    count.get_ref()
                ),
            ));
        }
        Some(count) => Some(*count.get_ref() as usize),
        None => None,
    };
    let concurrent_starts = match raw.docker.concurrent_starts {
        Some(count) if !(1..=MAX_CONCURRENT_STARTS as u64).contains(count.get_ref()) => {
            return Err(checker.error(
                count.span(),
                &["docker", "concurrent_starts"],
                format!(
                    "{} is out of range: from 1 to {MAX_CONCURRENT_STARTS} containers started at once",
                    count.get_ref()
                ),
            ));
        }
        Some(count) => Some(*count.get_ref() as usize),
        None => None,
    };
    let mut runtimes = BTreeMap::new();
    for (name, profile) in raw.runtimes {
        let profile = checker.profile(name, profile, &limits, &trust)?;
        runtimes.insert(profile.name.clone(), profile);
    }
    Ok(HostConfig {
        source: source.to_path_buf(),
        runtimes,
        limits,
        trust,
        bundles,
        ready_egress_networks,
        concurrent_starts,
    })
}

/// Validates one profile at a time; every error carries the line of the value at fault.
pub(super) struct Checker<'a> {
    text: &'a str,
    source: &'a Path,
    pub(super) dir: &'a Path,
    /// Environment variables that hold a secret of some runtime, with which one: no plugin of any
    /// runtime (nor the materializer) may be granted them.
    secret_vars: BTreeMap<String, String>,
}

/// Variables the host itself reads credentials or settings from (`AAC_MANAGER_TOKEN`, the
/// runner's bearer token, above all): never granted to a plugin.
const HOST_VAR_PREFIX: &str = "AAC_";

/// Every variable that names or sources a runtime's secret, with a phrase saying whose.
fn secret_vars(
    runtimes: &BTreeMap<Spanned<String>, Spanned<RawProfile>>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (name, profile) in runtimes {
        for (key, source) in &profile.get_ref().secrets {
            let whose = format!("runtime `{}`'s secret {}", name.get_ref(), key.get_ref());
            vars.entry(key.get_ref().clone())
                .or_insert_with(|| whose.clone());
            if let SecretSource::Env(var) = source.get_ref() {
                vars.entry(var.clone())
                    .or_insert_with(|| format!("the source of {whose}"));
            }
        }
        for (key, credential) in &profile.get_ref().credentials {
            let whose = format!(
                "runtime `{}`'s credential {}",
                name.get_ref(),
                key.get_ref()
            );
            vars.entry(key.get_ref().clone())
                .or_insert_with(|| whose.clone());
            if let Some(var) = &credential.get_ref().env {
                vars.entry(var.clone())
                    .or_insert_with(|| format!("the source of {whose}"));
            }
        }
    }
    vars
}

impl Checker<'_> {
    pub(super) fn error(
        &self,
        span: Range<usize>,
        key: &[&str],
        message: impl Into<String>,
    ) -> anyhow::Error {
        ConfigError {
            file: self.source.to_path_buf(),
            line: Some(errors::line_of(self.text, span.start)),
            key: Some(errors::key_path(key)),
            message: message.into(),
        }
        .into()
    }

    fn profile(
        &self,
        name: Spanned<String>,
        raw: Spanned<RawProfile>,
        host_limits: &PluginLimits,
        host_trust: &TrustSettings,
    ) -> Result<RuntimeProfile> {
        let line = errors::line_of(self.text, raw.span().start);
        let name_span = name.span();
        let name = name.into_inner();
        let profile_span = raw.span();
        let raw = raw.into_inner();
        let n = name.as_str();
        if !is_runtime_name(n) {
            return Err(self.error(
                name_span,
                &["runtimes", n],
                format!("invalid runtime name {n:?} (letters, digits, '.', '_' and '-', starting with a letter or digit)"),
            ));
        }

        let plugin_text = raw.plugin.get_ref();
        if plugin_text.trim().is_empty() {
            return Err(self.error(
                raw.plugin.span(),
                &["runtimes", n, "plugin"],
                "the plugin path is empty",
            ));
        }
        let plugin = self.dir.join(plugin_text);

        let plugin_sha256 =
            self.sha256_pin(raw.plugin_sha256, &["runtimes", n, "plugin_sha256"])?;

        let Some(raw_versions) = raw.versions else {
            return Err(self.error(
                profile_span,
                &["runtimes", n, "versions"],
                "no versions defined (add e.g. versions.\"1.0\".image = \"registry/image:1.0\")",
            ));
        };
        let versions_span = raw_versions.span();
        let mut versions = BTreeMap::new();
        for (version, entry) in raw_versions.into_inner() {
            let v = version.get_ref().as_str();
            if !is_version(v) {
                return Err(self.error(
                    version.span(),
                    &["runtimes", n, "versions", v],
                    format!("invalid version {v:?} (no '@', spaces or control characters)"),
                ));
            }
            let image = entry.image.get_ref();
            if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.error(
                    entry.image.span(),
                    &["runtimes", n, "versions", v, "image"],
                    format!("invalid image {image:?}"),
                ));
            }
            versions.insert(
                v.to_string(),
                VersionProfile {
                    image: image.clone(),
                },
            );
        }
        if versions.is_empty() {
            return Err(self.error(
                versions_span,
                &["runtimes", n, "versions"],
                "no versions defined",
            ));
        }
        let default_version = raw.default_version.get_ref();
        if !versions.contains_key(default_version) {
            let known = versions.keys().map(String::as_str).collect::<Vec<_>>();
            return Err(self.error(
                raw.default_version.span(),
                &["runtimes", n, "default_version"],
                format!(
                    "{default_version:?} is not among versions (known: {})",
                    known.join(", ")
                ),
            ));
        }

        let sandbox = self.sandbox(n, raw.sandbox)?;
        if sandbox.network == NetworkMode::Egress && raw.warm_pool > 0 {
            // A pooled sandbox starts before its run: its proxy's verdicts would have no run.
            return Err(self.error(
                profile_span.clone(),
                &["runtimes", n, "warm_pool"],
                "a warm pool is not available with network mode egress (each run gets its own \
                 network and proxy): set warm_pool = 0",
            ));
        }

        let mut env = BTreeMap::new();
        for (key, value) in raw.env {
            let k = key.get_ref().as_str();
            if !is_env_name(k) {
                return Err(self.error(
                    key.span(),
                    &["runtimes", n, "env", k],
                    invalid_env_name(k),
                ));
            }
            if value.get_ref().contains('\0') {
                return Err(self.error(
                    value.span(),
                    &["runtimes", n, "env", k],
                    "the value contains a NUL character",
                ));
            }
            env.insert(k.to_string(), value.into_inner());
        }

        let mut secrets = BTreeMap::new();
        for (key, source) in raw.secrets {
            let k = key.get_ref().as_str();
            let path = ["runtimes", n, "secrets", k];
            if !is_env_name(k) {
                return Err(self.error(key.span(), &path, invalid_env_name(k)));
            }
            if env.contains_key(k) {
                return Err(self.error(
                    key.span(),
                    &path,
                    format!("{k} is also set in env; a variable is either plain env or a secret"),
                ));
            }
            let span = source.span();
            let source = match source.into_inner() {
                // Not quoted: a mistaken value here may be the secret itself.
                SecretSource::Env(var) if !is_env_name(&var) => {
                    return Err(self.error(
                        span,
                        &path,
                        "env: not a valid environment variable name (letters, digits and '_', not starting \
                         with a digit); it names the host variable holding the secret, not the secret itself",
                    ));
                }
                SecretSource::File(file) if file.as_os_str().is_empty() => {
                    return Err(self.error(span, &path, "file: the path is empty"));
                }
                SecretSource::File(file) => SecretSource::File(self.dir.join(file)),
                env_source => env_source,
            };
            secrets.insert(k.to_string(), source);
        }

        let credentials = self.credentials(n, raw.credentials, &env, &secrets, sandbox.network)?;
        let grants = self.grant_list(raw.grants, &["runtimes", n])?;
        let limits = self.limits(
            raw.limits,
            &["runtimes", n, "limits"],
            *host_limits,
            Some(host_limits.memory_bytes),
        )?;
        let trust = self.trust(raw.trust, &["runtimes", n, "trust"], host_trust)?;

        let session_idle_timeout = self.positive_duration(
            raw.session_idle_timeout,
            &["runtimes", n, "session_idle_timeout"],
            DEFAULT_SESSION_IDLE_TIMEOUT,
        )?;
        let max_session_duration = self.positive_duration(
            raw.max_session_duration,
            &["runtimes", n, "max_session_duration"],
            DEFAULT_MAX_SESSION_DURATION,
        )?;

        Ok(RuntimeProfile {
            name: name.clone(),
            plugin,
            plugin_sha256,
            default_version: default_version.clone(),
            versions,
            sandbox,
            env,
            secrets,
            credentials,
            warm_pool: raw.warm_pool,
            session_idle_timeout,
            max_session_duration,
            pull_policy: raw.pull_policy,
            grants,
            limits,
            trust,
            backend_config: serde_json::to_value(&raw.backend_config).map_err(|err| {
                self.error(
                    profile_span.clone(),
                    &["runtimes", n, "backend_config"],
                    format!("cannot be expressed as JSON: {err}"),
                )
            })?,
            line,
        })
    }

    fn sandbox(&self, n: &str, raw: RawSandbox) -> Result<SandboxSettings> {
        if let Some(cpus) = &raw.cpus {
            let value = *cpus.get_ref();
            if !(value.is_finite() && value > 0.0) {
                return Err(self.error(
                    cpus.span(),
                    &["runtimes", n, "sandbox", "cpus"],
                    format!("cpus must be a number greater than 0, not {value}"),
                ));
            }
        }
        if let Some(memory) = &raw.memory {
            let bytes = memory.get_ref().0;
            if bytes < MIN_MEMORY_BYTES {
                return Err(self.error(
                    memory.span(),
                    &["runtimes", n, "sandbox", "memory"],
                    format!("memory of {bytes} bytes is below 6MiB, Docker's minimum"),
                ));
            }
        }
        if let Some(pids) = &raw.pids {
            let value = *pids.get_ref();
            if value <= 0 {
                return Err(self.error(
                    pids.span(),
                    &["runtimes", n, "sandbox", "pids"],
                    format!("pids must be greater than 0, not {value}"),
                ));
            }
        }
        if let Some(runtime) = &raw.runtime {
            let name = runtime.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(self.error(
                    runtime.span(),
                    &["runtimes", n, "sandbox", "runtime"],
                    format!("{name:?} is not a runtime name (letters, digits, '-', '_', '.'), e.g. \"runsc\""),
                ));
            }
        }
        if let Some(user) = &raw.user {
            check_user(user.get_ref()).map_err(|message| {
                self.error(user.span(), &["runtimes", n, "sandbox", "user"], message)
            })?;
        }
        let (network, egress_allow, egress_hosts) = match raw.network {
            None => (NetworkMode::None, Allowlist::default(), Default::default()),
            Some(network) => {
                let span = network.span();
                let RawNetwork { mode, allow, hosts } = network.into_inner();
                if hosts.is_some() && mode != NetworkMode::Egress {
                    return Err(self.error(
                        span,
                        &["runtimes", n, "sandbox", "network", "hosts"],
                        format!(
                            "the fixed host addresses of `hosts` are the egress proxy's: `hosts` needs mode = \"egress\", not `{}`",
                            mode.as_str()
                        ),
                    ));
                }
                if allow.is_some() && mode != NetworkMode::Egress {
                    return Err(self.error(
                        span,
                        &["runtimes", n, "sandbox", "network", "allow"],
                        format!(
                            "an allowlist needs mode = \"egress\" (with `{}` it would not be enforced)",
                            mode.as_str()
                        ),
                    ));
                }
                (mode, allow.unwrap_or_default(), hosts.unwrap_or_default())
            }
        };
        Ok(SandboxSettings {
            cpus: raw.cpus.map(Spanned::into_inner),
            memory_bytes: raw.memory.map(|m| m.into_inner().0),
            pids: raw.pids.map(Spanned::into_inner),
            network,
            egress_allow,
            egress_hosts,
            user: raw.user.map(Spanned::into_inner),
            runtime: raw.runtime.map(Spanned::into_inner),
        })
    }

    /// A pin: 64 hex digits, kept lowercase.
    pub(super) fn sha256_pin(
        &self,
        pin: Option<Spanned<String>>,
        key: &[&str],
    ) -> Result<Option<String>> {
        let Some(pin) = pin else { return Ok(None) };
        let hex = pin.get_ref();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.error(
                pin.span(),
                key,
                format!("invalid sha256 {hex:?} (expected 64 hex digits)"),
            ));
        }
        Ok(Some(hex.to_ascii_lowercase()))
    }

    /// `grants` below `owner` (`["runtimes", NAME]` or `["bundles"]`).
    /// `grants` of a runtime or of `[bundles]`. An env grant naming a secret of any runtime, or
    /// one of the host's own variables, is refused: a plugin would read it.
    pub(super) fn grant_list(&self, raw: RawGrants, owner: &[&str]) -> Result<Grants> {
        let mut grants = Grants::default();
        for host in raw.http {
            let h = host.get_ref();
            if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.error(
                    host.span(),
                    &[owner, &["grants", "http"]].concat(),
                    format!("invalid host {h:?}"),
                ));
            }
            grants.http.push(host.into_inner());
        }
        for var in raw.env {
            let v = var.get_ref().as_str();
            let path = [owner, &["grants", "env"]].concat();
            if !is_env_name(v) {
                return Err(self.error(var.span(), &path, invalid_env_name(v)));
            }
            if let Some(whose) = self.secret_vars.get(v) {
                return Err(self.error(
                    var.span(),
                    &path,
                    format!(
                        "{v} is {whose}: secrets go into the sandbox, never into the plugin \
                         (of this or any other runtime)"
                    ),
                ));
            }
            if v.starts_with(HOST_VAR_PREFIX) {
                return Err(self.error(
                    var.span(),
                    &path,
                    format!(
                        "{v} is one of the host's own variables ({HOST_VAR_PREFIX}*, e.g. \
                         AAC_MANAGER_TOKEN, the runner's bearer token): never granted to a plugin"
                    ),
                ));
            }
            grants.env.push(v.to_string());
        }
        Ok(grants)
    }

    fn positive_duration(
        &self,
        raw: Option<Spanned<HumanDuration>>,
        key: &[&str],
        default: std::time::Duration,
    ) -> Result<std::time::Duration> {
        let Some(raw) = raw else { return Ok(default) };
        if raw.get_ref().0.is_zero() {
            return Err(self.error(raw.span(), key, "the duration must be longer than 0s"));
        }
        Ok(raw.into_inner().0)
    }
}
