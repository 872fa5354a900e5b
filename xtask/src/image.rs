//! The local sandbox image, built without a registry: a busybox-static rootfs imported with
//! `docker import`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

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
];

pub fn build_busybox() -> Result<()> {
    let exists = Command::new("docker")
        .args(["image", "inspect", BUSYBOX_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if exists {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .context("busybox-static is not installed (apt-get install busybox-static)")?;
    let rootfs = super::root().join("target/images/busybox-rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
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
    let tar = super::root().join("target/images/busybox.tar");
    super::run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .args(["--owner=0", "--group=0", "--mode=u+w", "."]),
    )?;
    super::run(
        Command::new("docker")
            .args([
                "import",
                "--change",
                "ENV PATH=/bin",
                "--change",
                "USER 1000:1000",
            ])
            .arg(&tar)
            .arg(BUSYBOX_IMAGE),
    )
}
