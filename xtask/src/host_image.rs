//! `cargo xtask host-image`: a container image of aac-host itself, without a registry or a base
//! image: the binary, the shared libraries `ldd` names and a passwd file, imported with
//! `docker import`. Its entrypoint is `aac-host`, so `docker run IMAGE --version` prints the
//! versions; deploy/k8s/ runs `manager` and `runner` from it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The image's tag: aac-host's version.
pub const HOST_IMAGE: &str = concat!("aac/aac-host:", env!("CARGO_PKG_VERSION"));

/// `host-image [--release] [--binary PATH] [--tag TAG]`: builds aac-host (unless a binary is
/// given) and imports it as `TAG` (default [`HOST_IMAGE`]).
pub fn build(args: &[String]) -> Result<()> {
    let mut binary = None;
    let mut tag = HOST_IMAGE.to_owned();
    let mut release = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--release" => release = true,
            "--binary" => binary = Some(PathBuf::from(args.next().context("--binary PATH")?)),
            "--tag" => tag = args.next().context("--tag TAG")?.clone(),
            other => bail!("host-image: unknown argument {other:?}"),
        }
    }
    let binary = match binary {
        Some(binary) => binary,
        None => {
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.args(["build", "-p", "aac-host", "--bin", "aac-host"]);
            if release {
                cargo.arg("--release");
            }
            super::run(cargo.current_dir(super::root()))?;
            let profile = if release { "release" } else { "debug" };
            super::root().join("target").join(profile).join("aac-host")
        }
    };
    // One directory per process: two builds at once (tests in parallel) do not share one.
    let rootfs = super::root().join(format!(
        "target/images/aac-host-rootfs-{}",
        std::process::id()
    ));
    let imported = rootfs_of(&binary, &rootfs).and_then(|()| {
        super::image::import(
            &rootfs,
            &tag,
            &[
                r#"ENTRYPOINT ["/usr/local/bin/aac-host"]"#,
                "ENV PATH=/usr/local/bin",
            ],
        )
    });
    let _ = std::fs::remove_dir_all(&rootfs);
    imported?;
    eprintln!("built {tag} from {}", binary.display());
    Ok(())
}

/// A fresh rootfs at `rootfs`: the binary at /usr/local/bin/aac-host, its shared libraries at
/// their paths, users root, agent (1000) and aac (10001), a world-writable /tmp.
fn rootfs_of(binary: &Path, rootfs: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(rootfs);
    for dir in ["usr/local/bin", "etc", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::copy(binary, rootfs.join("usr/local/bin/aac-host"))
        .with_context(|| format!("copying {}", binary.display()))?;
    for library in shared_libraries(binary)? {
        let target = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        std::fs::create_dir_all(target.parent().expect("a library has a directory"))?;
        // Follows symlinks: the image holds the library itself under the name ldd gave.
        std::fs::copy(&library, &target)
            .with_context(|| format!("copying {}", library.display()))?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nagent:x:1000:1000:agent:/tmp:/sbin/nologin\n\
         aac:x:10001:10001:aac:/tmp:/sbin/nologin\n",
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nagent:x:1000:\naac:x:10001:\n",
    )?;
    Ok(())
}

/// The absolute paths `ldd` lists for `binary` (the loader included; the vDSO has none).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("could not run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: nothing to copy.
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("ldd {}: {line}", binary.display());
        }
    }
    Ok(libraries)
}
