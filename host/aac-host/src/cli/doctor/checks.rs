//! The checks of `aac-host doctor`, each adding its lines to the report.

use std::path::Path;
use std::time::Duration;

use crate::config::HostConfig;
use crate::manager::client::ClientError;
use crate::manager::{ManagerClient, RetryPolicy};
use crate::plugin::{PluginHost, PluginHostConfig};
use crate::runner::RunProfile;
use crate::sandbox::NetworkMode;
use crate::sandbox::docker::DockerDriver;

use super::Check;

/// How long the manager and the firewall tools may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Docker answers and its version; the cgroup version and the container runtimes it reports.
pub(super) async fn docker(report: &mut Vec<Check>) -> Option<DockerDriver> {
    let driver = match DockerDriver::connect().await {
        Ok(driver) => driver,
        Err(err) => {
            report.push(Check::fail(
                "docker",
                format!("{err:#}"),
                "start dockerd, or set DOCKER_HOST to the engine runners should use",
            ));
            return None;
        }
    };
    let version = driver.client().version().await;
    let info = driver.client().info().await;
    match version {
        Ok(v) => report.push(Check::ok(
            "docker",
            format!(
                "Docker {} (API {}) answers",
                v.version.as_deref().unwrap_or("?"),
                v.api_version.as_deref().unwrap_or("?")
            ),
        )),
        Err(err) => report.push(Check::warn(
            "docker",
            format!("Docker answers but not with its version: {err}"),
            "check the engine's logs",
        )),
    }
    let info = match info {
        Ok(info) => info,
        Err(err) => {
            report.push(Check::warn(
                "cgroup",
                format!("`docker info` failed: {err}"),
                "check the engine's logs",
            ));
            return Some(driver);
        }
    };
    let cgroup = info
        .cgroup_version
        .map(|v| v.to_string())
        .unwrap_or_default();
    let driver_name = info
        .cgroup_driver
        .map(|d| d.to_string())
        .unwrap_or_default();
    match cgroup.as_str() {
        "2" => report.push(Check::ok(
            "cgroup",
            format!("cgroup v2 ({driver_name} driver)"),
        )),
        "1" => report.push(Check::warn(
            "cgroup",
            format!("cgroup v1 ({driver_name} driver)"),
            "limits work, but OOM kills and pids limits are reported more reliably on cgroup v2 \
             (boot with systemd.unified_cgroup_hierarchy=1)",
        )),
        other => report.push(Check::warn(
            "cgroup",
            format!("Docker reports no cgroup version ({other:?})"),
            "memory, CPU and pids limits may not apply; check `docker info`",
        )),
    }
    let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
    runtimes.sort();
    let default = info.default_runtime.unwrap_or_default();
    if runtimes.iter().any(|r| r == "runc") {
        let gvisor = if runtimes.iter().any(|r| r == "runsc") {
            "runsc registered (gVisor available)"
        } else {
            "runsc not registered (gVisor not available)"
        };
        report.push(Check::ok(
            "runtimes",
            format!("{} (default {default}); {gvisor}", runtimes.join(", ")),
        ));
    } else {
        report.push(Check::fail(
            "runtimes",
            format!(
                "Docker has no runc runtime (it has: {}; default {default})",
                runtimes.join(", ")
            ),
            "sandboxes are created with runc: install it or register it in daemon.json",
        ));
    }
    Some(driver)
}

/// The config file: the one given, else `aac.toml` when there is one.
pub(super) fn config(report: &mut Vec<Check>, file: Option<&Path>) -> Option<HostConfig> {
    let (file, given) = match file {
        Some(file) => (file, true),
        None => (Path::new("aac.toml"), false),
    };
    if !given && !file.exists() {
        report.push(Check::warn(
            "config",
            "no config file (aac.toml here): images and plugins of profiles not checked",
            "give --config FILE",
        ));
        return None;
    }
    match HostConfig::load(file) {
        Ok(config) => {
            report.push(Check::ok(
                "config",
                format!(
                    "{} parses ({} runtime(s))",
                    file.display(),
                    config.runtimes.len()
                ),
            ));
            Some(config)
        }
        Err(err) => {
            report.push(Check::fail(
                "config",
                format!("{err:#}"),
                "`aac-host config check FILE` shows every problem",
            ));
            None
        }
    }
}

/// Each runtime version's image is present and its plugin loads.
pub(super) async fn profiles(
    report: &mut Vec<Check>,
    config: Option<&HostConfig>,
    docker: Option<&DockerDriver>,
    plugins: &PluginHostConfig,
) {
    let Some(config) = config else { return };
    let host = match PluginHost::new(plugins.clone()) {
        Ok(host) => Some(host),
        Err(err) => {
            report.push(Check::fail(
                "plugin",
                format!("the plugin engine cannot start: {err:#}"),
                "check --cache-dir / AAC_CACHE_DIR",
            ));
            None
        }
    };
    for (name, runtime) in &config.runtimes {
        for version in runtime.versions.keys() {
            let selector = format!("{name}@{version}");
            // The image is checked even when the rest of the profile does not resolve.
            let image = &runtime.versions[version].image;
            match docker {
                None => report.push(Check::fail(
                    "image",
                    format!("{selector}: image {image} not checked: no Docker"),
                    "start dockerd",
                )),
                Some(docker) => match docker.ensure_image(image).await {
                    Ok(()) => report.push(Check::ok(
                        "image",
                        format!("{selector}: image {image} present"),
                    )),
                    Err(err) => report.push(Check::fail(
                        "image",
                        format!("{selector}: {err}"),
                        format!("`docker pull {image}`, or build it (`cargo xtask images`)"),
                    )),
                },
            }
            let profile = match RunProfile::from_config(config, &selector) {
                Ok(profile) => profile,
                Err(err) => {
                    report.push(Check::fail(
                        "profile",
                        format!("{selector}: {err:#}"),
                        "`aac-host config check` shows every problem",
                    ));
                    continue;
                }
            };
            if let Some(host) = &host {
                match host
                    .load_backend_checked(&profile.plugin, &profile.integrity)
                    .await
                {
                    Ok(_) => report.push(Check::ok(
                        "plugin",
                        format!("{selector}: {} loads", profile.plugin.display()),
                    )),
                    Err(err) => report.push(Check::fail(
                        "plugin",
                        format!("{selector}: {err:#}"),
                        "check the runtime's `plugin` path, pin and signature",
                    )),
                }
            }
        }
    }
}

/// The compiled-plugin cache directory exists or can be made, and is writable.
pub(super) fn cache_dir(report: &mut Vec<Check>, dir: Option<&Path>) {
    let Some(dir) = dir else {
        report.push(Check::warn(
            "cache",
            "the compiled-plugin cache is off (--no-cache, or no HOME)",
            "every start compiles each plugin again; set --cache-dir or AAC_CACHE_DIR",
        ));
        return;
    };
    let probe = dir.join(format!(".aac-doctor-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"probe"));
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => report.push(Check::ok("cache", format!("{} is writable", dir.display()))),
        Err(err) => report.push(Check::fail(
            "cache",
            format!("{} is not writable: {err}", dir.display()),
            "give --cache-dir / AAC_CACHE_DIR a directory this user can write",
        )),
    }
}

/// `iptables` and `ip6tables` can be used, when a profile has an egress network.
pub(super) async fn firewall(report: &mut Vec<Check>, config: Option<&HostConfig>) {
    let egress: Vec<&String> = config
        .map(|c| {
            c.runtimes
                .iter()
                .filter(|(_, r)| r.sandbox.network == NetworkMode::Egress)
                .map(|(name, _)| name)
                .collect()
        })
        .unwrap_or_default();
    if egress.is_empty() {
        report.push(Check::ok(
            "iptables",
            "not needed: no profile has network = egress",
        ));
        return;
    }
    for tool in ["iptables", "ip6tables"] {
        let run = tokio::process::Command::new(tool)
            .args(["-w", "-S", "INPUT"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output();
        let problem = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => None,
            Ok(Ok(out)) => Some(format!(
                "`{tool} -S INPUT` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(Err(err)) => Some(format!("`{tool}` cannot run: {err}")),
            Err(_) => Some(format!("`{tool}` did not answer within {PROBE_TIMEOUT:?}")),
        };
        let names = egress
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        report.push(match problem {
            None => Check::ok(
                "iptables",
                format!("{tool} usable (egress profiles: {names})"),
            ),
            Some(problem) => Check::fail(
                "iptables",
                format!("{problem} (egress profiles: {names})"),
                "egress sandboxes need iptables and ip6tables and root or CAP_NET_ADMIN",
            ),
        });
    }
}

/// The manager answers `/readyz`, and accepts the token when one is given.
pub(super) async fn manager(
    report: &mut Vec<Check>,
    global: &super::super::Global,
    token: Option<String>,
) {
    let Some(url) = global.manager_url.as_deref() else {
        report.push(Check::warn(
            "manager",
            "not checked: no manager URL",
            "give --manager-url or AAC_MANAGER_URL",
        ));
        return;
    };
    let url = url.trim_end_matches('/');
    let readyz = format!("{url}/readyz");
    let mut http = reqwest::Client::builder().timeout(PROBE_TIMEOUT);
    if let Some(ca) = &global.ca_cert {
        match std::fs::read(ca)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
        {
            Ok(cert) => http = http.add_root_certificate(cert),
            Err(err) => {
                report.push(Check::fail(
                    "manager",
                    format!("the CA certificate {} cannot be used: {err}", ca.display()),
                    "give --ca-cert the PEM file of the CA that signed the manager's certificate",
                ));
                return;
            }
        }
    }
    let answer = match http.build() {
        Ok(http) => http.get(&readyz).send().await,
        Err(err) => {
            report.push(Check::fail(
                "manager",
                format!("HTTP client: {err}"),
                "report this",
            ));
            return;
        }
    };
    match answer {
        Ok(reply) if reply.status().is_success() => {
            report.push(Check::ok("manager", format!("{readyz} answers: ready")));
        }
        Ok(reply) => {
            let status = reply.status();
            let body = reply.text().await.unwrap_or_default();
            report.push(Check::fail(
                "manager",
                format!("{readyz} answers {status}: {}", body.trim()),
                "the manager is up but not ready: see its log",
            ));
            return;
        }
        Err(err) => {
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            report.push(Check::fail(
                "manager",
                format!("{readyz} does not answer: {chain}"),
                "is the manager running? check the URL (http or https), the port and any \
                 firewall; an https manager with a private CA needs --ca-cert",
            ));
            return;
        }
    }
    token_accepted(report, global, url, token).await;
}

async fn token_accepted(
    report: &mut Vec<Check>,
    global: &super::super::Global,
    url: &str,
    token: Option<String>,
) {
    if token.is_none() && global.token_file.is_none() {
        report.push(Check::warn(
            "token",
            "not checked: no token given",
            "give --token-file, --token or AAC_MANAGER_TOKEN",
        ));
        return;
    }
    let client = match super::super::connect::client(global, url, token) {
        Ok(client) => client.with_retry(RetryPolicy {
            deadline: PROBE_TIMEOUT,
            ..RetryPolicy::default()
        }),
        Err(err) => {
            report.push(Check::fail(
                "token",
                format!("{err:#}"),
                "check --token-file",
            ));
            return;
        }
    };
    // Any token role may read a run: a run that does not exist answers 404 once the token passed.
    match probe(&client).await {
        Ok(()) => report.push(Check::ok("token", format!("{url} accepts the token"))),
        Err(ClientError::Unauthorized { .. }) => report.push(Check::fail(
            "token",
            format!("{url} refuses the token (401)"),
            "the token must be one of the manager's (--token-file role:token lines, or --token)",
        )),
        Err(err) => report.push(Check::fail(
            "token",
            format!("could not check the token: {err}"),
            "see the manager's log",
        )),
    }
}

async fn probe(client: &ManagerClient) -> Result<(), ClientError> {
    match client.get_run("aac-doctor-probe").await {
        Ok(_) | Err(ClientError::Status { status: 404, .. }) => Ok(()),
        Err(err) => Err(err),
    }
}
