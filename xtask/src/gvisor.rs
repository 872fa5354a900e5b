//! gVisor for `sandbox.runtime = "runsc"`: installs Debian's `runsc` and registers it with the local
//! dockerd (daemon.json + `SIGHUP`, which reloads runtimes without a restart), as
//! docs/operations.md#gvisor describes. Best effort: a machine without it only skips the gVisor tests.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::docker::{has, is_root};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const DOCKERD_PID: &str = "/var/run/docker.pid";
/// The ptrace platform needs no KVM and no systrap support; the sandbox's own network namespace is
/// what Docker gave the container (`--network=host` is gVisor's passthrough, not the host's network).
const RUNTIME_ENTRY: &str = r#""runsc": { "path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace", "--network=host"] }"#;

/// Makes `docker info` list `runsc` when that can be done here; says why not otherwise.
pub fn ensure_runsc() {
    if let Err(err) = try_ensure_runsc() {
        eprintln!("xtask: gVisor not set up ({err:#}); the gVisor tests will be skipped");
    }
}

fn try_ensure_runsc() -> Result<()> {
    if engine_lists_runsc() {
        return Ok(());
    }
    if !is_root() {
        bail!("not root");
    }
    if std::env::var_os("DOCKER_HOST").is_some() {
        bail!("DOCKER_HOST names another engine; register runsc there by hand");
    }
    if !has("runsc") {
        let install = || {
            crate::run(
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "runsc"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        if install().is_err() {
            crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
            install()?;
        }
    }
    register_runtime(Path::new(DAEMON_JSON))?;
    reload_dockerd()?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if engine_lists_runsc() {
            eprintln!("xtask: gVisor's runsc is registered with dockerd");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("dockerd did not list runsc 15 s after reloading {DAEMON_JSON}")
}

fn engine_lists_runsc() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{json .Runtimes}}"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"runsc\"")
        })
}

/// Adds the runsc runtime to daemon.json, keeping what is there. Without a JSON parser in xtask,
/// only the two safe cases are edited: no file (or `{}`), or a file with no `runtimes` key.
fn register_runtime(path: &Path) -> Result<()> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let updated = with_runsc(&current).with_context(|| {
        format!(
            "{} already has `runtimes`: add {RUNTIME_ENTRY} to it by hand",
            path.display()
        )
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn with_runsc(current: &str) -> Option<String> {
    let trimmed = current.trim();
    if trimmed.is_empty() || trimmed == "{}" {
        return Some(format!("{{\n  \"runtimes\": {{ {RUNTIME_ENTRY} }}\n}}\n"));
    }
    if trimmed.contains("\"runtimes\"") || !trimmed.starts_with('{') {
        return None;
    }
    Some(format!(
        "{{\n  \"runtimes\": {{ {RUNTIME_ENTRY} }},{}\n",
        &trimmed[1..]
    ))
}

/// `SIGHUP` makes dockerd re-read daemon.json's runtimes; it does not stop anything.
fn reload_dockerd() -> Result<()> {
    let pid = std::fs::read_to_string(DOCKERD_PID)
        .with_context(|| format!("reading dockerd's pid from {DOCKERD_PID}"))?;
    let pid = pid.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{DOCKERD_PID} holds no pid");
    }
    crate::run(Command::new("kill").args(["-HUP", pid]))
}

#[cfg(test)]
mod tests {
    use super::with_runsc;

    #[test]
    fn an_empty_config_gets_the_runtime() {
        for empty in ["", "{}", " {}\n"] {
            let json = with_runsc(empty).unwrap();
            assert!(json.contains("\"runsc\""), "{json}");
            assert!(json.trim_start().starts_with('{') && json.trim_end().ends_with('}'));
        }
    }

    #[test]
    fn other_keys_are_kept() {
        let json = with_runsc("{\n  \"debug\": true\n}").unwrap();
        assert!(json.contains("\"debug\": true"), "{json}");
        assert!(json.contains("\"runsc\""), "{json}");
        assert_eq!(
            json.matches('{').count(),
            json.matches('}').count(),
            "{json}"
        );
    }

    #[test]
    fn existing_runtimes_are_left_to_the_operator() {
        assert!(with_runsc(r#"{"runtimes": {"kata": {"path": "/x"}}}"#).is_none());
    }
}
