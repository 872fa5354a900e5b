//! `cargo xtask plugins --polyglot`: the JavaScript and Python example backends (examples/), built
//! from the repository's `wit/` (contract `aac:plugin@0.2.1`) with the toolchains `aac-host plugin
//! build` pins (jco and componentize-py; the very same file, host/aac-host/src/cli/toolchain.rs).
//! The tools are installed once into target/polyglot/tools/ with npm and pip; node and python3
//! must be on PATH. Tests that build JS or Python plugins set `AAC_TOOLS_DIR` to that directory.

use std::path::PathBuf;

use anyhow::Result;

#[allow(dead_code)] // aac-host's module: xtask uses part of it.
#[path = "../../host/aac-host/src/cli/toolchain.rs"]
mod toolchain;

use toolchain::Toolchain;

/// The tools directory of this checkout.
pub fn tools_dir() -> PathBuf {
    super::root().join("target/polyglot/tools")
}

/// Builds examples/js-shell and examples/python-shell into target/plugins/{js,python}-shell.wasm.
pub fn build() -> Result<PathBuf> {
    build_js()?;
    build_python()?;
    let out = super::root().join("target/plugins");
    eprintln!("polyglot plugins in {}", out.display());
    Ok(out)
}

/// For `cargo xtask test`: builds each example whose language is installed; the test of the
/// other says it is skipped.
pub fn build_available() -> Result<()> {
    if toolchain::installed("npm") {
        build_js()?;
    } else {
        eprintln!("npm is not installed: the JavaScript example is not built (its test skips)");
    }
    if toolchain::installed("python3") {
        build_python()?;
    } else {
        eprintln!("python3 is not installed: the Python example is not built (its test skips)");
    }
    Ok(())
}

fn toolchain() -> Toolchain {
    Toolchain {
        dir: tools_dir(),
        offline: false,
    }
}

fn build_js() -> Result<()> {
    let root = super::root();
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let jco = toolchain().jco()?;
    super::run(&mut toolchain::componentize_js(
        &jco,
        &root.join("examples/js-shell/shell.js"),
        &root.join("wit"),
        &out.join("js-shell.wasm"),
    ))
}

fn build_python() -> Result<()> {
    let root = super::root();
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let componentize_py = toolchain().componentize_py()?;
    super::run(&mut toolchain::componentize_python(
        &componentize_py,
        &root.join("examples/python-shell"),
        &root.join("wit"),
        &out.join("python-shell.wasm"),
    ))
}
