//! Which Docker engine to talk to: Docker's own environment, read as the docker CLI reads it.
//!
//! * `DOCKER_HOST`: `unix:///path/docker.sock`, `tcp://HOST:PORT` (or `http://`), `https://HOST:PORT`;
//!   unset or empty: `unix:///var/run/docker.sock`.
//! * `DOCKER_TLS_VERIFY` (any non-empty value): TLS for a `tcp://` address, the engine's certificate
//!   checked against `ca.pem` and ours presented from `cert.pem`/`key.pem` in
//!   `DOCKER_CERT_PATH` (default `~/.docker`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use bollard::{API_DEFAULT_VERSION, Docker};

/// Seconds a single request to the engine may take (bollard's own default).
const REQUEST_TIMEOUT_SECS: u64 = 120;
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The engine's address, as given (for messages), and a client for it.
pub(super) fn client_from_env() -> Result<(String, Docker)> {
    let host = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty());
    let from_env = host.is_some();
    let host = host.unwrap_or_else(|| DEFAULT_HOST.into());
    let tls = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|value| !value.is_empty());
    let named = if from_env {
        format!("{host} (DOCKER_HOST)")
    } else {
        host.clone()
    };
    let client = if host.starts_with("unix://") {
        Docker::connect_with_unix(&host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if host.starts_with("https://") || (tls && host.starts_with("tcp://")) {
        let dir = cert_dir()?;
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            if !dir.join(file).is_file() {
                bail!(
                    "Docker engine {named} uses TLS, but {} is missing (set DOCKER_CERT_PATH to the \
                     directory holding ca.pem, cert.pem and key.pem)",
                    dir.join(file).display()
                );
            }
        }
        Docker::connect_with_ssl(
            &host,
            &dir.join("key.pem"),
            &dir.join("cert.pem"),
            &dir.join("ca.pem"),
            REQUEST_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(&host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else {
        bail!(
            "DOCKER_HOST `{host}` is not an address aac-host can use: give unix:///path/to/docker.sock, \
             tcp://HOST:PORT (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for TLS) or https://HOST:PORT"
        );
    };
    let client = client.map_err(|err| {
        anyhow::anyhow!(
            "the Docker engine at {named} does not answer: {err} (start dockerd or set DOCKER_HOST)"
        )
    })?;
    Ok((named, client))
}

/// `DOCKER_CERT_PATH`, else `~/.docker`.
fn cert_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CERT_PATH").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".docker")),
        None => bail!("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is"),
    }
}
