//! The local sandbox image, built without a registry: a busybox-static rootfs imported with
//! `docker import`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub const BUSYBOX_IMAGE: &str = "aac/busybox:latest";

const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "ls",
    "echo",
    "sleep",
    "id",
    "pwd",
    "mkdir",
    "rm",
    "cp",
    "mv",
    "touch",
    "head",
    "tail",
    "wc",
    "grep",
    "sed",
    "awk",
    "env",
    "kill",
    "ps",
    "seq",
    "yes",
    "dd",
    "true",
    "false",
    "test",
    "[",
    "printf",
    "date",
    "find",
    "xargs",
    "sort",
    "uniq",
    "tr",
    "cut",
    "chmod",
    "whoami",
    "hostname",
    "uname",
    "stat",
    "mktemp",
    "tee",
    "basename",
    "dirname",
    "sha256sum",
    "tar",
    // Static busybox's wget crashes without NSS libraries; nc serves to reach a service.
    "nc",
];

/// Bumped whenever the image's content changes (e.g. a new applet): an older local image is then
/// re-imported under the same tag instead of silently kept.
const BUSYBOX_REVISION: &str = "2";
const REVISION_LABEL: &str = "dev.aac-host.image-revision";

pub fn build_busybox() -> Result<()> {
    let revision = Command::new("docker")
        .args(["image", "inspect", "--format"])
        .arg(format!("{{{{index .Config.Labels \"{REVISION_LABEL}\"}}}}"))
        .arg(BUSYBOX_IMAGE)
        .stderr(Stdio::null())
        .output();
    if revision.is_ok_and(|out| {
        out.status.success() && out.stdout.trim_ascii() == BUSYBOX_REVISION.as_bytes()
    }) {
        return Ok(());
    }
    let rootfs = super::root().join("target/images/busybox-rootfs");
    busybox_rootfs(&rootfs)?;
    import_busybox(&rootfs, Command::new("docker"))
}

/// Imports the busybox rootfs at `rootfs` as the sandbox image through `docker` (a `docker`
/// command, possibly with `-H` for another engine).
pub fn import_busybox(rootfs: &Path, docker: Command) -> Result<()> {
    let label = format!("LABEL {REVISION_LABEL}={BUSYBOX_REVISION}");
    import_with(docker, rootfs, BUSYBOX_IMAGE, &["ENV PATH=/bin", &label])
}

/// Whether the local engine already has `tag`.
pub fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A fresh rootfs at `rootfs`: busybox and its applets, a non-root `agent` user (1000:1000),
/// world-writable /tmp and an empty /workspace.
pub fn busybox_rootfs(rootfs: &Path) -> Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .context("busybox-static is not installed (apt-get install busybox-static)")?;
    let _ = std::fs::remove_dir_all(rootfs);
    for dir in [
        "bin",
        "etc",
        "tmp",
        "workspace",
        "proc",
        "dev",
        "sys",
        "home/agent",
    ] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    // Docker copies a tmpfs mount point's mode from the image: /tmp must be world-writable there.
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nagent:x:1000:\n")?;
    Ok(())
}

/// Imports `rootfs` as image `tag`, owned by root, running as 1000:1000, with extra `changes`
/// (Dockerfile instructions such as `ENV PATH=…`). The tar is streamed, never written to disk.
pub fn import(rootfs: &Path, tag: &str, changes: &[&str]) -> Result<()> {
    import_with(Command::new("docker"), rootfs, tag, changes)
}

fn import_with(mut import: Command, rootfs: &Path, tag: &str, changes: &[&str]) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-cf", "-", "--owner=0", "--group=0", "--mode=u+w", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("could not run tar")?;
    import.arg("import");
    for change in changes.iter().chain(&["USER 1000:1000"]) {
        import.args(["--change", change]);
    }
    import
        .arg("-")
        .arg(tag)
        .stdin(tar.stdout.take().context("tar's stdout")?);
    let imported = super::run(&mut import);
    let tarred = tar.wait().context("waiting for tar")?;
    imported?;
    if !tarred.success() {
        bail!("tar of {} failed with {tarred}", rootfs.display());
    }
    Ok(())
}
