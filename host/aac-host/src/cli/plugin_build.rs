//! `aac-host plugin build [DIR]` builds a plugin project into a component and prints its path.
//! The project's language is read from its files: `Cargo.toml` (cargo for wasm32-wasip2),
//! `package.json` (jco), `pyproject.toml` (componentize-py). The JavaScript and Python toolchains
//! are the versions `toolchain` pins, installed once into a tools directory and reused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::toolchain::{self, Toolchain};

/// How to build.
pub struct BuildOptions {
    /// No network: cargo's `--offline`; JS and Python tools must be in the tools directory.
    pub offline: bool,
    /// Where jco and componentize-py are installed.
    pub tools_dir: PathBuf,
}

/// The default tools directory: `tools/` in the plugin cache directory (`$AAC_CACHE_DIR`, else
/// `~/.cache/aac-host`).
pub fn default_tools_dir() -> Option<PathBuf> {
    crate::plugin::ArtifactCache::default_dir().map(|cache| cache.join("tools"))
}

/// Builds the project in `dir` and returns the component's path.
pub fn build(dir: &Path, options: &BuildOptions) -> Result<PathBuf> {
    if dir.join("Cargo.toml").is_file() {
        build_rust(dir, options.offline)
    } else if dir.join("package.json").is_file() {
        build_js(dir, options)
    } else if dir.join("pyproject.toml").is_file() {
        build_python(dir, options)
    } else if dir.is_dir() {
        bail!(
            "{} has no Cargo.toml (Rust), package.json (JavaScript) or pyproject.toml (Python): \
             pass the plugin project's directory",
            dir.display()
        )
    } else {
        bail!(
            "{} is not a directory: pass the plugin project's directory",
            dir.display()
        )
    }
}

/// What `build_js` reads from package.json.
#[derive(Deserialize)]
struct PackageJson {
    name: String,
    /// The plugin's source; `plugin.js` when absent.
    main: Option<String>,
}

/// `jco componentize MAIN --wit wit --world-name backend -o build/NAME.wasm`.
fn build_js(dir: &Path, options: &BuildOptions) -> Result<PathBuf> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("could not read {}", manifest.display()))?;
    let package: PackageJson = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a package.json with a `name`", manifest.display()))?;
    check_project_name(&package.name, &manifest)?;
    let source = dir.join(package.main.as_deref().unwrap_or("plugin.js"));
    if !source.is_file() {
        bail!(
            "{} does not exist: it is the plugin's source (`main` in {})",
            source.display(),
            manifest.display()
        );
    }
    let wit = wit_dir(dir)?;
    // The tool before any write: a missing one leaves the project as it was.
    let jco = toolchain_of(options).jco()?;
    let out = output(dir, &package.name)?;
    toolchain::run(&mut toolchain::componentize_js(&jco, &source, &wit, &out))?;
    built(out)
}

/// What `build_python` reads from pyproject.toml.
#[derive(Deserialize)]
struct PyProject {
    project: PyProjectTable,
}

#[derive(Deserialize)]
struct PyProjectTable {
    name: String,
}

/// `componentize-py -d wit -w aac:plugin/backend@0.2.1 componentize app -o build/NAME.wasm`.
fn build_python(dir: &Path, options: &BuildOptions) -> Result<PathBuf> {
    let manifest = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("could not read {}", manifest.display()))?;
    let project: PyProject = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a pyproject.toml with `[project] name`",
            manifest.display()
        )
    })?;
    let name = project.project.name;
    check_project_name(&name, &manifest)?;
    if !dir.join("app.py").is_file() {
        bail!(
            "{} has no app.py: componentize-py builds the plugin from the module `app`",
            dir.display()
        );
    }
    let wit = wit_dir(dir)?;
    let tool = toolchain_of(options).componentize_py()?;
    let out = output(dir, &name)?;
    toolchain::run(&mut toolchain::componentize_python(&tool, dir, &wit, &out))?;
    built(out)
}

fn check_project_name(name: &str, manifest: &Path) -> Result<()> {
    super::plugin_new::check_name(name)
        .with_context(|| format!("the `name` in {}", manifest.display()))
}

/// The project's `wit/`, absolute.
fn wit_dir(dir: &Path) -> Result<PathBuf> {
    let wit = dir
        .canonicalize()
        .with_context(|| format!("could not resolve {}", dir.display()))?
        .join("wit");
    if !wit.join("worlds.wit").is_file() {
        bail!(
            "{} has no wit/worlds.wit: the plugin is built against the contract's WIT there \
             (`aac-host plugin new` copies it)",
            dir.display()
        );
    }
    Ok(wit)
}

/// The component's path, `build/NAME.wasm` (absolute), an old one removed so that a failed build
/// leaves none to mistake for its result.
fn output(dir: &Path, name: &str) -> Result<PathBuf> {
    let build = dir
        .canonicalize()
        .with_context(|| format!("could not resolve {}", dir.display()))?
        .join("build");
    std::fs::create_dir_all(&build)
        .with_context(|| format!("could not create {}", build.display()))?;
    let out = build.join(format!("{name}.wasm"));
    match std::fs::remove_file(&out) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("could not remove {}", out.display()))
        }
        _ => Ok(out),
    }
}

fn toolchain_of(options: &BuildOptions) -> Toolchain {
    Toolchain {
        dir: options.tools_dir.clone(),
        offline: options.offline,
    }
}

fn built(out: PathBuf) -> Result<PathBuf> {
    if !out.is_file() {
        bail!("the build reported success but wrote no {}", out.display());
    }
    Ok(out)
}

/// One line of `cargo build --message-format=json`.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// Runs `cargo build --target wasm32-wasip2 --release` in `dir` (its output goes to stderr) and
/// returns the component it built. `offline` adds `--offline`.
fn build_rust(dir: &Path, offline: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if offline {
        command.arg("--offline");
    }
    let output = command
        .output()
        .with_context(|| format!("could not run cargo in {}", dir.display()))?;
    if !output.status.success() {
        bail!(
            "cargo build failed in {} ({}); its errors are above",
            dir.display(),
            output.status
        );
    }
    let components: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<CargoMessage>(line).ok())
        .filter(|message| message.reason == "compiler-artifact")
        .flat_map(|message| message.filenames)
        .filter(|file| file.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    match components.as_slice() {
        [component] => Ok(component.clone()),
        [] => bail!(
            "cargo built no .wasm in {}: is the crate a `cdylib` (`[lib] crate-type = [\"cdylib\"]`)?",
            dir.display()
        ),
        [.., last] => Ok(last.clone()),
    }
}
