//! The flags that choose a plugin and its sandbox, shared by `aac-host run` and runner mode:
//! `--plugin` with sandbox flags, or `--runtime` naming a profile of `aac.toml`, flags on top.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::config::HostConfig;
use crate::runner::{DEFAULT_IMAGE, Profiles, RunProfile};
use crate::sandbox::{NetworkMode, PullPolicy};

#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// The backend adapter (.wasm component). Required unless --runtime names a profile (or, in
    /// runner mode, the config file has the runs' runtimes).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// A runtime profile of the config file, `NAME` or `NAME@VERSION`.
    #[arg(long)]
    pub runtime: Option<String>,
    /// The host config file with runtime profiles.
    #[arg(long, env = "AAC_CONFIG", default_value = "aac.toml")]
    pub config: PathBuf,
    /// Sandbox image (default: the profile's, else aac/busybox:latest).
    #[arg(long)]
    pub image: Option<String>,
    /// Network of the sandbox: none, bridge, per-run or egress (default: the profile's, else none).
    #[arg(long)]
    pub network: Option<NetworkMode>,
    /// With `--network egress`: a destination the sandbox may reach (`HOST`, `HOST:PORT`,
    /// `*.DOMAIN[:PORT]`), added to the profile's allowlist; repeatable.
    #[arg(long = "allow", value_name = "HOST[:PORT]", value_parser = aac_egress::AllowRule::parse)]
    pub allow: Vec<aac_egress::AllowRule>,
    /// CPUs the sandbox may use, greater than 0 (default: the profile's, else 2).
    #[arg(long, value_parser = super::values::cpus, allow_negative_numbers = true)]
    pub cpus: Option<f64>,
    /// Memory limit in MiB, at least 6, no swap beyond it (default: the profile's, else 2048).
    #[arg(long, value_parser = super::values::memory_mib, allow_negative_numbers = true)]
    pub memory_mib: Option<u64>,
    /// Process limit, greater than 0 (default: the profile's, else 512).
    #[arg(long, value_parser = super::values::pids, allow_negative_numbers = true)]
    pub pids: Option<i64>,
    /// When the image may be pulled: never, if-not-present or always (default: the profile's,
    /// else never).
    #[arg(long)]
    pub pull: Option<PullPolicy>,
}

impl ProfileArgs {
    /// The plugin limits of the config file's `[limits]`, when the file exists.
    pub fn host_limits(&self) -> Result<Option<crate::plugin::PluginLimits>> {
        if !self.config.is_file() {
            return Ok(None);
        }
        Ok(Some(HostConfig::load(&self.config)?.limits))
    }

    /// Whether any flag overrides the sandbox.
    fn has_overrides(&self) -> bool {
        self.image.is_some()
            || self.network.is_some()
            || !self.allow.is_empty()
            || self.cpus.is_some()
            || self.memory_mib.is_some()
            || self.pids.is_some()
            || self.pull.is_some()
    }

    /// One profile: `--plugin` and flags, over `--runtime`'s profile when given.
    pub fn profile(&self) -> Result<RunProfile> {
        let mut profile = match (&self.runtime, &self.plugin) {
            (None, None) => bail!(
                "give --plugin PATH, or --runtime NAME with a runtime profile in {}",
                self.config.display()
            ),
            (None, Some(plugin)) => RunProfile::new(plugin.clone()),
            (Some(selector), plugin) => {
                let config = HostConfig::load(&self.config)?;
                let mut profile = RunProfile::from_config(&config, selector)?;
                if let Some(plugin) = plugin {
                    profile.plugin = plugin.clone();
                }
                profile
            }
        };
        self.apply(&mut profile);
        if !self.allow.is_empty() && profile.network != NetworkMode::Egress {
            bail!(
                "--allow needs --network egress (the sandbox's network is `{}`)",
                profile.network.as_str()
            );
        }
        Ok(profile)
    }

    fn apply(&self, profile: &mut RunProfile) {
        if let Some(image) = &self.image {
            profile.image = image.clone();
        } else if self.runtime.is_none() {
            profile.image = DEFAULT_IMAGE.into();
        }
        profile.limits.cpus = self.cpus.or(profile.limits.cpus);
        profile.limits.memory_bytes = self
            .memory_mib
            .map(|mib| mib << 20)
            .or(profile.limits.memory_bytes);
        profile.limits.pids = self.pids.or(profile.limits.pids);
        profile.network = self.network.unwrap_or(profile.network);
        if !self.allow.is_empty() {
            let mut rules = profile.egress_allow.rules().to_vec();
            rules.extend(self.allow.iter().cloned());
            profile.egress_allow = std::sync::Arc::new(aac_egress::Allowlist::new(rules));
        }
        profile.pull_policy = self.pull.unwrap_or(profile.pull_policy);
    }

    /// Where a runner finds each run's profile: the one given by flags, or — with neither
    /// `--plugin` nor `--runtime` — the runtime of `aac.toml` each run's backend profile selects.
    pub fn profiles(&self) -> Result<Profiles> {
        if self.plugin.is_some() || self.runtime.is_some() {
            return Ok(Profiles::Fixed(self.profile()?));
        }
        if self.has_overrides() {
            bail!("sandbox flags need --plugin or --runtime");
        }
        if !self.config.is_file() {
            bail!(
                "give --plugin PATH, or a config file with runtime profiles ({} does not exist)",
                self.config.display()
            );
        }
        Ok(Profiles::Config(HostConfig::load(&self.config)?))
    }
}
