//! `cargo xtask plugins --polyglot`: the JavaScript and Python example backends (examples/), built
//! from the frozen `aac:plugin@0.1.0` WIT (host/plugin-host/wit-0.1.0: the host serves them
//! through its 0.1.0 adapter; moving them to 0.2.0 needs the tools online) with pinned toolchains: jco 1.34.0
//! (1.35's bundled preview2-shim cannot read a WIT directory) and componentize-py 0.25.1. The tools
//! are installed once into target/polyglot/ with npm and pip; node and python3 must be on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

const JCO: &str = "@bytecodealliance/jco@1.34.0";
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const WORLD: &str = "aac:plugin/backend@0.1.0";
/// The WIT they are built from, relative to the repository.
const WIT_DIR: &str = "host/plugin-host/wit-0.1.0";

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
    if installed("npm") {
        build_js()?;
    } else {
        eprintln!("npm is not installed: the JavaScript example is not built (its test skips)");
    }
    if installed("python3") {
        build_python()?;
    } else {
        eprintln!("python3 is not installed: the Python example is not built (its test skips)");
    }
    Ok(())
}

fn build_js() -> Result<()> {
    let root = super::root();
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let jco = ensure_jco(&root.join("target/polyglot"))?;
    super::run(
        Command::new(&jco)
            .arg("componentize")
            .arg(root.join("examples/js-shell/shell.js"))
            .arg("--wit")
            .arg(root.join(WIT_DIR))
            .args(["--world-name", "backend", "-o"])
            .arg(out.join("js-shell.wasm")),
    )
}

fn build_python() -> Result<()> {
    let root = super::root();
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let componentize_py = ensure_componentize_py(&root.join("target/polyglot"))?;
    super::run(
        Command::new(&componentize_py)
            .current_dir(root.join("examples/python-shell"))
            .arg("-d")
            .arg(root.join(WIT_DIR))
            .args(["-w", WORLD, "componentize", "app", "-o"])
            .arg(out.join("python-shell.wasm")),
    )
}

fn ensure_jco(tools: &Path) -> Result<PathBuf> {
    let jco = tools.join("node_modules/.bin/jco");
    if !jco.is_file() {
        require("npm", "node and npm build the JavaScript example (jco)")?;
        std::fs::create_dir_all(tools)?;
        super::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(tools)
                .arg(JCO),
        )?;
    }
    Ok(jco)
}

fn ensure_componentize_py(tools: &Path) -> Result<PathBuf> {
    let venv = tools.join("venv");
    let tool = venv.join("bin/componentize-py");
    if !tool.is_file() {
        require(
            "python3",
            "python3 builds the Python example (componentize-py)",
        )?;
        super::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        super::run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet"])
                .arg(COMPONENTIZE_PY),
        )?;
    }
    Ok(tool)
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn require(program: &str, why: &str) -> Result<()> {
    if !installed(program) {
        bail!("`{program}` is not on PATH: {why}");
    }
    Ok(())
}
