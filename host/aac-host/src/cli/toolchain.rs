//! The pinned toolchains that build JavaScript and Python plugins: jco (npm) and componentize-py
//! (PyPI), installed on first use into a tools directory (one subdirectory per tool and version,
//! marked complete only after a successful install) and reused after that. xtask builds the
//! examples with this very file (`#[path]`), so the versions cannot drift: only std and anyhow
//! here for that reason.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// jco 1.35's bundled preview2-shim cannot read a WIT directory ("failed to get path metadata").
pub const JCO_VERSION: &str = "1.34.0";
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The world a backend plugin targets, as componentize-py names it.
pub const BACKEND_WORLD: &str = "aac:plugin/backend@0.2.1";

/// Written into a tool's directory once it is installed: a directory without it is a broken
/// install (interrupted, failed) and is installed again.
const COMPLETE: &str = ".aac-complete";

/// Where the tools live and whether they may be installed.
pub struct Toolchain {
    pub dir: PathBuf,
    /// Never install (no network): a tool that is not there yet is an error saying how to get it.
    pub offline: bool,
}

impl Toolchain {
    /// The `jco` executable, installed with npm when missing. Needs node (and npm to install).
    pub fn jco(&self) -> Result<PathBuf> {
        require(
            "node",
            &format!("a JavaScript plugin is built with jco {JCO_VERSION}, which runs on Node.js"),
        )?;
        let home = self.dir.join(format!("jco-{JCO_VERSION}"));
        self.ensure(&home, "jco", || {
            require(
                "npm",
                &format!("jco {JCO_VERSION} is installed with npm (it comes with Node.js)"),
            )?;
            run(Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&home)
                .arg(format!("@bytecodealliance/jco@{JCO_VERSION}")))
        })?;
        Ok(home.join("node_modules/.bin/jco"))
    }

    /// The `componentize-py` executable, installed with pip into a venv when missing. Needs
    /// python3 with its venv module.
    pub fn componentize_py(&self) -> Result<PathBuf> {
        require(
            "python3",
            &format!(
                "a Python plugin is built with componentize-py {COMPONENTIZE_PY_VERSION}, \
                 installed with pip into a venv"
            ),
        )?;
        let home = self
            .dir
            .join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
        self.ensure(&home, "componentize-py", || {
            run(Command::new("python3").args(["-m", "venv"]).arg(&home)).context(
                "python3 could not create a venv (on Debian and Ubuntu: apt-get install python3-venv)",
            )?;
            run(Command::new(home.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}")))
        })?;
        Ok(home.join("bin/componentize-py"))
    }

    /// Runs `install` into `home` unless a complete install is there, one process at a time
    /// (a lock file beside it).
    fn ensure(&self, home: &Path, tool: &str, install: impl FnOnce() -> Result<()>) -> Result<()> {
        if home.join(COMPLETE).is_file() {
            return Ok(());
        }
        if self.offline {
            bail!(
                "{tool} is not installed in the tools directory {} and --offline forbids installing \
                 it: run the same command once without --offline (it installs {} there)",
                self.dir.display(),
                home.file_name().unwrap_or_default().to_string_lossy()
            );
        }
        std::fs::create_dir_all(&self.dir).with_context(|| {
            format!(
                "could not create the tools directory {}",
                self.dir.display()
            )
        })?;
        let mut lock_name = home.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let lock_path = self.dir.join(lock_name);
        let lock = File::create(&lock_path)
            .with_context(|| format!("could not create {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("could not lock {}", lock_path.display()))?;
        // Another process may have installed it while this one waited for the lock.
        if home.join(COMPLETE).is_file() {
            return Ok(());
        }
        if home.exists() {
            std::fs::remove_dir_all(home).with_context(|| {
                format!("could not remove the broken install {}", home.display())
            })?;
        }
        install().with_context(|| format!("installing {tool} into {}", home.display()))?;
        std::fs::write(home.join(COMPLETE), "")
            .with_context(|| format!("could not write {}", home.join(COMPLETE).display()))?;
        Ok(())
    }
}

/// `jco componentize SOURCE --wit WIT --world-name backend -o OUT`.
pub fn componentize_js(jco: &Path, source: &Path, wit: &Path, out: &Path) -> Command {
    let mut command = Command::new(jco);
    command
        .arg("componentize")
        .arg(source)
        .arg("--wit")
        .arg(wit)
        .args(["--world-name", "backend", "-o"])
        .arg(out);
    command
}

/// `componentize-py -d WIT -w aac:plugin/backend@0.2.1 componentize app -o OUT`, run in the
/// project directory (where `app.py` is).
pub fn componentize_python(tool: &Path, project: &Path, wit: &Path, out: &Path) -> Command {
    let mut command = Command::new(tool);
    command
        .current_dir(project)
        .arg("-d")
        .arg(wit)
        .args(["-w", BACKEND_WORLD, "componentize", "app", "-o"])
        .arg(out);
    command
}

/// Whether `program --version` runs.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn require(program: &str, why: &str) -> Result<()> {
    if !installed(program) {
        bail!("`{program}` is not on PATH: {why}; install it and try again");
    }
    Ok(())
}

/// Runs `command` with its output on stderr (stdout stays for the caller's own answer).
pub fn run(command: &mut Command) -> Result<()> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .with_context(|| format!("could not run `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status}); its output is above");
    }
    Ok(())
}
