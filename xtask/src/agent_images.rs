//! Test images with the real agent CLIs, built without a registry: the CLIs come from their npm
//! packages (`npm pack`, which knows its own registry), cached under target/agent-clis/, and go on
//! top of the busybox rootfs with `docker import`.
//!
//! * `aac/codex:0.169.0`: Codex's static musl build (its whole vendor folder but the voice
//!   runtime), on PATH.
//! * `aac/claude-code:2.1.330`: Claude Code's musl build, plus what it needs around it: the musl
//!   loader (Debian `musl`) and a real bash for its Bash tool (Debian `bash-static`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::image;

pub const CODEX_VERSION: &str = "0.169.0";
pub const CODEX_IMAGE: &str = "aac/codex:0.169.0";
pub const CLAUDE_VERSION: &str = "2.1.330";
pub const CLAUDE_IMAGE: &str = "aac/claude-code:2.1.330";

const MUSL_LOADER: &str = "/lib/ld-musl-x86_64.so.1";
const BASH_STATIC: &str = "/bin/bash-static";

/// Builds both agent images unless the engine has them already.
pub fn build_all() -> Result<()> {
    build_codex()?;
    build_claude()
}

fn build_codex() -> Result<()> {
    if image::image_exists(CODEX_IMAGE) {
        return Ok(());
    }
    let tarball = npm_pack(&format!("@openai/codex@{CODEX_VERSION}-linux-x64"))?;
    let rootfs = images_dir().join("codex-rootfs");
    image::busybox_rootfs(&rootfs)?;
    let opt = rootfs.join("opt/codex");
    std::fs::create_dir_all(&opt)?;
    super::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&opt)
            .args([
                "--strip-components=3",
                "--exclude=*/codex-resources/voice",
                "package/vendor/x86_64-unknown-linux-musl",
            ]),
    )?;
    if !opt.join("bin/codex").is_file() {
        bail!("{} holds no vendor/…/bin/codex", tarball.display());
    }
    image::import(
        &rootfs,
        CODEX_IMAGE,
        &["ENV PATH=/opt/codex/bin:/opt/codex/codex-path:/bin"],
    )?;
    std::fs::remove_dir_all(&rootfs)?;
    Ok(())
}

fn build_claude() -> Result<()> {
    if image::image_exists(CLAUDE_IMAGE) {
        return Ok(());
    }
    ensure_debian_files(&[(MUSL_LOADER, "musl"), (BASH_STATIC, "bash-static")])?;
    let tarball = npm_pack(&format!(
        "@anthropic-ai/claude-code-linux-x64-musl@{CLAUDE_VERSION}"
    ))?;
    let rootfs = images_dir().join("claude-code-rootfs");
    image::busybox_rootfs(&rootfs)?;
    let opt = rootfs.join("opt/claude");
    std::fs::create_dir_all(&opt)?;
    std::fs::create_dir_all(rootfs.join("lib"))?;
    super::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&opt)
            .args(["--strip-components=1", "package/claude"]),
    )?;
    // std::fs::copy follows the loader's symlink to the real libc.
    std::fs::copy(MUSL_LOADER, rootfs.join("lib/ld-musl-x86_64.so.1"))?;
    std::fs::copy(BASH_STATIC, rootfs.join("bin/bash"))?;
    std::os::unix::fs::symlink("/opt/claude/claude", rootfs.join("bin/claude"))?;
    image::import(
        &rootfs,
        CLAUDE_IMAGE,
        &["ENV PATH=/bin", "ENV SHELL=/bin/bash"],
    )?;
    std::fs::remove_dir_all(&rootfs)?;
    Ok(())
}

fn images_dir() -> PathBuf {
    super::root().join("target/images")
}

/// The npm tarball of `spec` (`@scope/name@version`), downloaded once into target/agent-clis/.
fn npm_pack(spec: &str) -> Result<PathBuf> {
    let cache = super::root().join("target/agent-clis");
    std::fs::create_dir_all(&cache)?;
    let (name, version) = spec[1..]
        .split_once('@')
        .with_context(|| format!("`{spec}` is not @scope/name@version"))?;
    // npm names the tarball scope-name-version.tgz.
    let file = cache.join(format!("{}-{version}.tgz", name.replace('/', "-")));
    if file.is_file() {
        return Ok(file);
    }
    if !super::docker::has("npm") {
        if !super::docker::is_root() {
            bail!("npm is needed to download {spec}: install it (Debian package `npm`)");
        }
        super::run(Command::new("apt-get").arg("update").arg("-qq"))?;
        super::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "npm"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    super::run(
        Command::new("npm")
            .args(["pack", "--silent", spec, "--pack-destination"])
            .arg(&cache),
    )
    .with_context(|| format!("downloading {spec} with npm (is npm installed?)"))?;
    if !file.is_file() {
        bail!("npm pack {spec} did not leave {}", file.display());
    }
    Ok(file)
}

/// Installs the Debian packages providing `files` when some are missing (only as root).
fn ensure_debian_files(files: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = files
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !super::docker::is_root() {
        bail!(
            "missing {}: install the Debian packages {} (or run as root)",
            files
                .iter()
                .map(|(path, _)| *path)
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(" ")
        );
    }
    super::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    super::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
