//! `aac-host config check [FILE]`: validates a config fully without running anything — the file
//! parses, every runtime version resolves to a profile, its plugin loads (exists, pin and
//! signature match, compiles or is cached) and, unless `--no-docker`, its image is present.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::HostConfig;
use crate::plugin::PluginHost;
use crate::runner::RunProfile;
use crate::sandbox::docker::DockerDriver;

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigCommand {
    /// Check a config file: every runtime version's plugin (file, pin, signature, compile) and
    /// image; exit 1 naming each problem.
    Check {
        /// The config file.
        #[arg(default_value = "aac.toml")]
        file: PathBuf,
        /// Do not ask Docker whether the images are present.
        #[arg(long)]
        no_docker: bool,
        #[command(flatten)]
        cache: super::CacheArgs,
    },
}

impl ConfigArgs {
    /// Where the plugins it checks are compiled to.
    pub fn cache(&self) -> &super::CacheArgs {
        let ConfigCommand::Check { cache, .. } = &self.command;
        cache
    }
}

pub async fn config(args: ConfigArgs, host: Arc<PluginHost>) -> Result<ExitCode> {
    let ConfigCommand::Check {
        file, no_docker, ..
    } = args.command;
    let config = HostConfig::load(&file)?;
    let driver = if no_docker {
        None
    } else {
        Some(
            DockerDriver::connect()
                .await
                .context("could not reach Docker to check the images (or pass --no-docker)")?,
        )
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, runtime) in &config.runtimes {
        for version in runtime.versions.keys() {
            let selector = format!("{name}@{version}");
            checked += 1;
            let profile = match RunProfile::from_config(&config, &selector) {
                Ok(profile) => profile,
                Err(err) => {
                    problems.push(format!("{selector}: {err:#}"));
                    continue;
                }
            };
            if let Err(err) = host
                .load_backend_checked(&profile.plugin, &profile.integrity)
                .await
            {
                problems.push(format!("{selector}: plugin: {err:#}"));
            }
            if let Some(driver) = &driver
                && let Err(err) = driver.ensure_image(&profile.image).await
            {
                problems.push(format!("{selector}: {err}"));
            }
        }
    }
    if problems.is_empty() {
        println!(
            "{}: ok ({checked} runtime version{} checked)",
            file.display(),
            if checked == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    eprintln!("{}: {} problem(s)", file.display(), problems.len());
    Ok(ExitCode::from(1))
}
