//! `aac-host doctor`: checks what a runner or manager host needs — Docker and its version, the
//! cgroup version, the container runtimes, each profile's image and plugin, the cache directory,
//! iptables for egress profiles, and the manager (answers `/readyz`, accepts the token) — and
//! prints one line per check: `ok`, `warn` or `fail` with a hint. Exit 0 without a `fail`, 1
//! with one. Nothing is started, pulled or changed (the cache check writes and removes a file).

mod checks;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::plugin::PluginHostConfig;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The config file whose profiles (images, plugins, egress) are checked; without it,
    /// `aac.toml` when there is one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Bearer token to check against the manager (else --token-file or AAC_MANAGER_TOKEN).
    #[arg(long, env = "AAC_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the checks as one JSON object.
    #[arg(long)]
    json: bool,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(check: &str, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(check: &str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn fail(check: &str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

pub async fn doctor(
    args: DoctorArgs,
    global: &super::Global,
    plugins: PluginHostConfig,
) -> Result<ExitCode> {
    let mut report = Vec::new();
    let docker = checks::docker(&mut report).await;
    let config = checks::config(&mut report, args.config.as_deref());
    checks::profiles(&mut report, config.as_ref(), docker.as_ref(), &plugins).await;
    checks::cache_dir(&mut report, plugins.cache_dir.as_deref());
    checks::firewall(&mut report, config.as_ref()).await;
    checks::manager(&mut report, global, args.token).await;
    let failed = report.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let out = serde_json::json!({ "ok": !failed, "checks": report });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for check in &report {
            let status = match check.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "fail",
            };
            match &check.hint {
                Some(hint) => println!(
                    "{status:<4}  {}: {} (hint: {hint})",
                    check.check, check.detail
                ),
                None => println!("{status:<4}  {}: {}", check.check, check.detail),
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
