//! Build facts for `aac-host --version`: the git commit and the wasmtime version of this build.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AAC_GIT_COMMIT={commit}");
    // The wasmtime this build links, as the workspace's lock file pins it.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock = std::path::Path::new(&manifest).join("../../Cargo.lock");
    let wasmtime = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| {
            text.split("[[package]]").find_map(|pkg| {
                let mut lines = pkg.lines().map(str::trim);
                lines.find(|l| *l == "name = \"wasmtime\"")?;
                lines
                    .find_map(|l| l.strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AAC_WASMTIME_VERSION={wasmtime}");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=AAC_GIT_COMMIT");
}
