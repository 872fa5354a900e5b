//! Builds plugins for wasm32-wasip2 and collects them in target/plugins/.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Plugins operators use.
pub const FIRST_PARTY: [&str; 4] = ["shell", "codex", "claude-code", "bundle"];
/// First-party plugins plus the misbehaving ones the tests load.
pub const ALL: [&str; 14] = [
    "shell",
    "codex",
    "claude-code",
    "bundle",
    "test-codex-parse",
    "test-misbehave",
    "test-wrong-version",
    "test-other-world",
    "test-touch-materializer",
    "test-hostile",
    "test-stuck",
    "test-legacy-v0-1",
    "test-legacy-materializer-v0-1",
    "test-materializer-v0-2-0",
];

pub fn build_all(packages: &[&str]) -> Result<PathBuf> {
    ensure_target()?;
    let mut command = super::cargo();
    command.args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"]);
    for package in packages {
        command.args(["-p", package]);
    }
    super::run(&mut command)?;
    let built = super::root().join("target/wasm32-wasip2/plugin");
    let out = super::root().join("target/plugins");
    std::fs::create_dir_all(&out)?;
    for package in packages {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let target = format!("{package}.wasm");
        std::fs::copy(built.join(&file), out.join(&target))
            .with_context(|| format!("copying {file} into {}", out.display()))?;
    }
    eprintln!("plugins in {}", out.display());
    Ok(out)
}

fn ensure_target() -> Result<()> {
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") =>
        {
            Ok(())
        }
        Ok(_) => super::run(std::process::Command::new("rustup").args([
            "target",
            "add",
            "wasm32-wasip2",
        ])),
        // Without rustup the toolchain is managed elsewhere; the build says what is missing.
        Err(_) => Ok(()),
    }
}
