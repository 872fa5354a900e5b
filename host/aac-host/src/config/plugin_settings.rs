//! The plugin side of `aac.toml`: `[limits]` (and a runtime's `limits`), `[trust]` (and a runtime's
//! `trust`), and `[bundles]`, the resource-bundle materializer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;

use super::raw::{Checker, RawGrants};
use super::units::{ByteSize, HumanDuration};
use super::{BundleSettings, Grants, TrustSettings};
use crate::plugin::{BundleLimits, Integrity, PluginLimits, TrustedKey};

/// Default CPU budget of one `materialize` call: hashing a large bundle takes a while.
pub const DEFAULT_MATERIALIZE_CPU: Duration = Duration::from_secs(120);
/// Default wall-clock deadline of one `materialize` call: downloading a large bundle takes longer.
pub const DEFAULT_MATERIALIZE_WALL: Duration = Duration::from_secs(30 * 60);
/// Plugins get less than this much memory only by mistake.
const MIN_PLUGIN_MEMORY: u64 = 1 << 20;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    memory: Option<Spanned<ByteSize>>,
    call_cpu: Option<Spanned<HumanDuration>>,
    turn_cpu: Option<Spanned<HumanDuration>>,
    cpu_share: Option<Spanned<f64>>,
    cpu_burst: Option<Spanned<HumanDuration>>,
    paced_cpu: Option<Spanned<f64>>,
    call_wall: Option<Spanned<HumanDuration>>,
    turn_wall: Option<Spanned<HumanDuration>>,
    event_size: Option<Spanned<ByteSize>>,
    events_per_second: Option<Spanned<u32>>,
    turn_output: Option<Spanned<ByteSize>>,
    result_size: Option<Spanned<ByteSize>>,
    process_starts_per_second: Option<Spanned<f64>>,
    process_start_burst: Option<Spanned<u32>>,
    paced_process_starts: Option<Spanned<f64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    require_signature: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBundles {
    plugin: Spanned<String>,
    plugin_sha256: Option<Spanned<String>>,
    #[serde(default)]
    grants: RawGrants,
    max_files: Option<Spanned<u64>>,
    max_bytes: Option<Spanned<ByteSize>>,
    cpu: Option<Spanned<HumanDuration>>,
    wall: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    trust: RawTrust,
}

impl Checker<'_> {
    /// `base` with the values `raw` sets; `key` is where `raw` sits (`["limits"]` or
    /// `["runtimes", NAME, "limits"]`). A runtime cannot raise memory above the host's `[limits]`:
    /// the engine reserves that much per plugin instance.
    pub(super) fn limits(
        &self,
        raw: RawLimits,
        key: &[&str],
        base: PluginLimits,
        ceiling: Option<usize>,
    ) -> Result<PluginLimits> {
        let path = |leaf: &'static str| [key, &[leaf]].concat();
        let mut limits = base;
        if let Some(memory) = raw.memory {
            let bytes = memory.get_ref().0;
            if bytes < MIN_PLUGIN_MEMORY {
                return Err(self.error(
                    memory.span(),
                    &path("memory"),
                    format!("{bytes} bytes is below the minimum of 1MiB"),
                ));
            }
            if let Some(ceiling) = ceiling
                && bytes > ceiling as u64
            {
                return Err(self.error(
                    memory.span(),
                    &path("memory"),
                    format!("{bytes} bytes is above the host's [limits] memory of {ceiling} bytes"),
                ));
            }
            limits.memory_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        for (raw, leaf, field) in [
            (raw.call_cpu, "call_cpu", &mut limits.call_cpu),
            (raw.turn_cpu, "turn_cpu", &mut limits.turn_cpu),
            (raw.cpu_burst, "cpu_burst", &mut limits.cpu_burst),
            (raw.call_wall, "call_wall", &mut limits.call_wall),
            (raw.turn_wall, "turn_wall", &mut limits.turn_wall),
        ] {
            if let Some(value) = raw {
                if value.get_ref().0.is_zero() {
                    return Err(self.error(
                        value.span(),
                        &path(leaf),
                        "the duration must be longer than 0s",
                    ));
                }
                *field = value.into_inner().0;
            }
        }
        let positive = |value: &Spanned<ByteSize>, leaf: &'static str| {
            if value.get_ref().0 == 0 {
                Err(self.error(value.span(), &path(leaf), "the size must be greater than 0"))
            } else {
                Ok(value.get_ref().0)
            }
        };
        if let Some(value) = &raw.event_size {
            limits.event_bytes = positive(value, "event_size")? as usize;
        }
        if let Some(value) = &raw.turn_output {
            limits.turn_output_bytes = positive(value, "turn_output")?;
        }
        if let Some(value) = &raw.result_size {
            limits.result_bytes = positive(value, "result_size")? as usize;
        }
        if let Some(value) = raw.cpu_share {
            let share = *value.get_ref();
            if !(share > 0.0 && share <= 1.0) {
                return Err(self.error(
                    value.span(),
                    &path("cpu_share"),
                    format!("{share} is not a share of one core: expected a number in (0, 1]"),
                ));
            }
            limits.cpu_share = share;
        }
        // A finite number above 0 (`what` names what it counts), or an error at its key.
        let above_zero = |value: &Spanned<f64>, leaf: &'static str, what: &str| {
            let number = *value.get_ref();
            if number > 0.0 && number.is_finite() {
                Ok(number)
            } else {
                Err(self.error(
                    value.span(),
                    &path(leaf),
                    format!("{number} is not {what}: expected a number above 0"),
                ))
            }
        };
        // An integer above 0, or an error at its key.
        let nonzero = |value: &Spanned<u32>, leaf: &'static str| {
            if *value.get_ref() == 0 {
                Err(self.error(value.span(), &path(leaf), "must be greater than 0"))
            } else {
                Ok(*value.get_ref())
            }
        };
        if let Some(value) = &raw.paced_cpu {
            if ceiling.is_some() {
                // A runtime's limits: the paced plugins' cores are shared by every runtime.
                return Err(self.error(
                    value.span(),
                    &path("paced_cpu"),
                    "the cores paced plugins share are the host's: set paced_cpu in [limits]",
                ));
            }
            limits.paced_cpu = above_zero(value, "paced_cpu", "a number of cores")?;
        }
        if let Some(value) = &raw.events_per_second {
            limits.events_per_second = nonzero(value, "events_per_second")?;
        }
        if let Some(value) = &raw.process_starts_per_second {
            limits.process_starts_per_second =
                above_zero(value, "process_starts_per_second", "a rate")?;
        }
        if let Some(value) = &raw.process_start_burst {
            limits.process_start_burst = nonzero(value, "process_start_burst")?;
        }
        if let Some(value) = &raw.paced_process_starts {
            if ceiling.is_some() {
                // A runtime's limits: the paced starts' pace is shared by every runtime.
                return Err(self.error(
                    value.span(),
                    &path("paced_process_starts"),
                    "the pace paced process starts share is the host's: set \
                     paced_process_starts in [limits]",
                ));
            }
            limits.paced_process_starts = above_zero(value, "paced_process_starts", "a rate")?;
        }
        Ok(limits)
    }

    /// Keys are 64 hex digits (an ed25519 public key); a runtime's keys add to the host's.
    pub(super) fn trust(
        &self,
        raw: RawTrust,
        key: &[&str],
        base: &TrustSettings,
    ) -> Result<TrustSettings> {
        let mut trust = base.clone();
        for hex_key in raw.keys {
            let text = hex_key.get_ref().trim().to_ascii_lowercase();
            TrustedKey::from_hex("", &text).map_err(|err| {
                self.error(
                    hex_key.span(),
                    &[key, &["keys"]].concat(),
                    format!("{err:#}"),
                )
            })?;
            if !trust.keys.contains(&text) {
                trust.keys.push(text);
            }
        }
        if let Some(required) = raw.require_signature {
            trust.require_signature = required;
        }
        Ok(trust)
    }

    pub(super) fn bundles(&self, raw: RawBundles, trust: &TrustSettings) -> Result<BundleSettings> {
        let key = ["bundles"];
        if raw.plugin.get_ref().trim().is_empty() {
            return Err(self.error(
                raw.plugin.span(),
                &["bundles", "plugin"],
                "the plugin path is empty",
            ));
        }
        let plugin: PathBuf = self.dir.join(raw.plugin.get_ref());
        let plugin_sha256 = self.sha256_pin(raw.plugin_sha256, &["bundles", "plugin_sha256"])?;
        let grants: Grants = self.grant_list(raw.grants, &key)?;
        let mut limits = BundleLimits::default();
        if let Some(files) = raw.max_files {
            if *files.get_ref() == 0 {
                return Err(self.error(
                    files.span(),
                    &["bundles", "max_files"],
                    "must be greater than 0",
                ));
            }
            limits.max_files = files.into_inner();
        }
        if let Some(bytes) = raw.max_bytes {
            if bytes.get_ref().0 == 0 {
                return Err(self.error(
                    bytes.span(),
                    &["bundles", "max_bytes"],
                    "the size must be greater than 0",
                ));
            }
            limits.max_bytes = bytes.into_inner().0;
        }
        let duration =
            |raw: Option<Spanned<HumanDuration>>, leaf: &str, default: Duration| match raw {
                Some(value) if value.get_ref().0.is_zero() => Err(self.error(
                    value.span(),
                    &["bundles", leaf],
                    "the duration must be longer than 0s",
                )),
                Some(value) => Ok(value.into_inner().0),
                None => Ok(default),
            };
        let cpu = duration(raw.cpu, "cpu", DEFAULT_MATERIALIZE_CPU)?;
        let wall = duration(raw.wall, "wall", DEFAULT_MATERIALIZE_WALL)?;
        let trust = self.trust(raw.trust, &["bundles", "trust"], trust)?;
        Ok(BundleSettings {
            plugin,
            plugin_sha256,
            grants,
            limits,
            cpu,
            wall,
            trust,
        })
    }
}

impl TrustSettings {
    /// What a plugin file under these settings (and an optional pin) must satisfy.
    pub fn integrity(&self, sha256: Option<&String>) -> Integrity {
        Integrity {
            sha256: sha256.cloned(),
            keys: self
                .keys
                .iter()
                .filter_map(|hex_key| {
                    TrustedKey::from_hex(format!("key {}…", &hex_key[..16]), hex_key).ok()
                })
                .collect(),
            require_signature: self.require_signature,
        }
    }
}

#[cfg(test)]
#[path = "plugin_settings_tests.rs"]
mod tests;
