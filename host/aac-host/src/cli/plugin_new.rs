//! `aac-host plugin new NAME` writes a working backend project from the templates in
//! `templates/` (embedded with `include_str!`), and `aac-host plugin build [DIR]` builds one into
//! a component and prints its path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

const CARGO_TOML: &str = include_str!("templates/rust/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("templates/rust/lib.rs.tmpl");
const README: &str = include_str!("templates/rust/README.md.tmpl");
const TRANSCRIPT: &str = include_str!("templates/rust/transcript.json.tmpl");

/// The SDK of the checkout this binary was built from, when it is still there.
const CHECKOUT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// Longest plugin name.
const MAX_NAME: usize = 64;

/// What `plugin new` writes.
pub struct NewProject<'a> {
    pub name: &'a str,
    pub lang: &'a str,
    /// Where to create it; `./NAME` when `None`.
    pub dir: Option<&'a Path>,
    /// The aac-sdk crate to depend on; this checkout's `sdk/` when `None`.
    pub sdk: Option<&'a Path>,
}

/// Writes the project and returns its directory. Refuses a directory that exists and is not
/// empty, so nothing is overwritten.
pub fn new_project(request: &NewProject<'_>) -> Result<PathBuf> {
    match request.lang {
        "rust" => {}
        "js" | "python" => bail!(
            "`plugin new --lang {}` is not supported yet: start from examples/{}-shell and the \
             build command in docs/plugin-authoring.md (\"JavaScript and Python\")",
            request.lang,
            request.lang
        ),
        other => bail!(
            "--lang {other:?} is not a language of `plugin new`: use rust (js and python are not supported yet)"
        ),
    }
    check_name(request.name)?;
    let sdk = sdk_path(request.sdk)?;
    let dir = request
        .dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(request.name));
    if dir.exists() {
        let mut entries = std::fs::read_dir(&dir)
            .with_context(|| format!("{} exists and cannot be read", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty: choose another directory (--dir) so nothing is overwritten",
                dir.display()
            );
        }
    }
    let crate_name = request.name.replace('-', "_");
    let sdk_text = sdk
        .to_str()
        .with_context(|| format!("the SDK path {} is not valid UTF-8", sdk.display()))?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", request.name)
            .replace("{{crate}}", &crate_name)
            // TOML basic string: escape what would end or break it.
            .replace(
                "{{sdk}}",
                &sdk_text.replace('\\', "\\\\").replace('"', "\\\""),
            )
    };
    for (file, template) in [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("README.md", README),
        ("transcripts/hello.json", TRANSCRIPT),
    ] {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(template))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(dir)
}

/// A plugin name is a Cargo package name kept simple: lowercase ASCII letters, digits, `-` and
/// `_`, starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        bail!(
            "plugin name {:?} is not valid: use up to {MAX_NAME} lowercase letters, digits, `-` \
             and `_`, starting with a letter (it becomes the Cargo package name)",
            crate::plugin::text::terminal_safe(&crate::plugin::text::cut(name, 80))
        );
    }
    Ok(())
}

/// The aac-sdk directory, absolute, checked to be the SDK.
fn sdk_path(given: Option<&Path>) -> Result<PathBuf> {
    let (path, source) = match given {
        Some(path) => (path.to_path_buf(), "--sdk"),
        None => (PathBuf::from(CHECKOUT_SDK), "this binary's checkout"),
    };
    let path = path.canonicalize().with_context(|| {
        format!(
            "the SDK directory {} (from {source}) does not exist: pass --sdk PATH to the aac-sdk crate",
            path.display()
        )
    })?;
    let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
    if !manifest
        .lines()
        .any(|line| line.trim() == r#"name = "aac-sdk""#)
    {
        bail!(
            "{} (from {source}) is not the aac-sdk crate: its Cargo.toml does not say name = \"aac-sdk\"",
            path.display()
        );
    }
    Ok(path)
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
pub fn build(dir: &Path, offline: bool) -> Result<PathBuf> {
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml: pass the plugin project's directory",
            dir.display()
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_simple_package_names() {
        for ok in ["echo", "my-agent", "agent_2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Echo", "2x", "a b", "../x", "a/b", &"a".repeat(65)] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("is not valid"), "{err}");
        }
    }

    #[test]
    fn unsupported_languages_say_so_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("p");
        for (lang, expected) in [
            ("js", "not supported yet"),
            ("python", "not supported yet"),
            ("cobol", "is not a language"),
        ] {
            let err = new_project(&NewProject {
                name: "p",
                lang,
                dir: Some(&target),
                sdk: None,
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!target.exists());
        }
    }

    #[test]
    fn a_non_empty_directory_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = new_project(&NewProject {
            name: "p",
            lang: "rust",
            dir: Some(dir.path()),
            sdk: None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
        assert!(!dir.path().join("Cargo.toml").exists());
    }

    #[test]
    fn a_wrong_sdk_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = new_project(&NewProject {
            name: "p",
            lang: "rust",
            dir: Some(&dir.path().join("p")),
            sdk: Some(dir.path()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not the aac-sdk crate"), "{err}");
    }
}
