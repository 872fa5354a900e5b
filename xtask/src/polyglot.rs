//! `cargo xtask plugins --polyglot`: the JavaScript and Python example backends (examples/), built
//! from the repository's wit/ with the pinned toolchains of /work/shared/reference: jco 1.34.0
//! (1.35's bundled preview2-shim cannot read a WIT directory) and componentize-py 0.25.1. The tools
//! are installed once into target/polyglot/ with npm and pip; node and python3 must be on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

const JCO: &str = "@bytecodealliance/jco@1.34.0";
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const WORLD: &str = "aac:plugin/backend@0.1.0";

/// Builds examples/js-shell and examples/python-shell into target/plugins/{js,python}-shell.wasm.
pub fn build() -> Result<PathBuf> {
    let root = super::root();
    let tools = root.join("target/polyglot");
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let wit = root.join("wit");

    let jco = ensure_jco(&tools)?;
    super::run(
        Command::new(&jco)
            .arg("componentize")
            .arg(root.join("examples/js-shell/shell.js"))
            .arg("--wit")
            .arg(&wit)
            .args(["--world-name", "backend", "-o"])
            .arg(out.join("js-shell.wasm")),
    )?;

    let componentize_py = ensure_componentize_py(&tools)?;
    super::run(
        Command::new(&componentize_py)
            .current_dir(root.join("examples/python-shell"))
            .arg("-d")
            .arg(&wit)
            .args(["-w", WORLD, "componentize", "app", "-o"])
            .arg(out.join("python-shell.wasm")),
    )?;
    eprintln!("polyglot plugins in {}", out.display());
    Ok(out)
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

fn require(program: &str, why: &str) -> Result<()> {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("`{program}` is not on PATH: {why}"),
    }
}
