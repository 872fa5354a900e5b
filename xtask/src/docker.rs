//! Makes sure a Docker engine answers: when none does and we are root, installs Debian's docker.io
//! (and busybox-static for the sandbox image) and starts dockerd in the background.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

pub fn ensure_engine() -> Result<()> {
    if engine_answers() {
        return Ok(());
    }
    if !is_root() {
        bail!("no Docker engine answers and we are not root: start dockerd, or set DOCKER_HOST");
    }
    if !has("dockerd") || !std::path::Path::new("/bin/busybox").exists() {
        super::run(Command::new("apt-get").arg("update").arg("-qq"))?;
        super::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "docker.io", "busybox-static"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let log_path = super::root().join("target/dockerd.log");
    std::fs::create_dir_all(log_path.parent().expect("target dir"))?;
    let log = std::fs::File::create(&log_path)?;
    eprintln!("starting dockerd (log: {})", log_path.display());
    Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(90) {
        if engine_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!(
        "dockerd did not answer within 90 s; see {}",
        log_path.display()
    )
}

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

pub fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}
