//! `aac-host plugin new NAME [--lang rust|js|python]` writes a working backend project from the
//! templates in `templates/` (embedded with `include_str!`): the source, a README, a transcript
//! the project's test replays, and for JavaScript and Python the contract's WIT (copied from this
//! binary's `wit/`, contract 0.2.1). `plugin_build` builds such a project.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A template: where it goes in the project and its text (`{{name}}`, `{{crate}}`, `{{sdk}}` are
/// filled in).
type Template = (&'static str, &'static str);

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("templates/rust/lib.rs.tmpl")),
    ("README.md", include_str!("templates/rust/README.md.tmpl")),
    ("transcripts/hello.json", TRANSCRIPT),
];

const JS: &[Template] = &[
    ("plugin.js", include_str!("templates/js/plugin.js.tmpl")),
    (
        "package.json",
        include_str!("templates/js/package.json.tmpl"),
    ),
    ("README.md", include_str!("templates/js/README.md.tmpl")),
    (".gitignore", "build/\n"),
    ("transcripts/hello.json", TRANSCRIPT),
];

const PYTHON: &[Template] = &[
    ("app.py", include_str!("templates/python/app.py.tmpl")),
    (
        "adapter.py",
        include_str!("templates/python/adapter.py.tmpl"),
    ),
    (
        "pyproject.toml",
        include_str!("templates/python/pyproject.toml.tmpl"),
    ),
    ("README.md", include_str!("templates/python/README.md.tmpl")),
    (".gitignore", "build/\n__pycache__/\n"),
    ("transcripts/hello.json", TRANSCRIPT),
];

const TRANSCRIPT: &str = include_str!("templates/transcript.json.tmpl");

/// The contract (every file of the repository's `wit/`), copied into JavaScript and Python
/// projects: their toolchains build from WIT, not from an SDK crate.
macro_rules! wit_files {
    ($($file:literal),* $(,)?) => {
        &[$((
            concat!("wit/", $file),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit/", $file)),
        )),*]
    };
}
const WIT: &[Template] = wit_files![
    "adapter.wit",
    "archive.wit",
    "events.schema.json",
    "events.wit",
    "log.wit",
    "materialize.wit",
    "modes.wit",
    "sandbox.wit",
    "types.wit",
    "worlds.wit",
];

/// The languages of `plugin new`.
pub const LANGUAGES: &str = "rust, js or python";

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
    /// The aac-sdk crate to depend on (Rust only); this checkout's `sdk/` when `None`.
    pub sdk: Option<&'a Path>,
}

/// Writes the project and returns its directory. Everything is checked before the first file is
/// written: a bad language or name, a wrong SDK path, or a directory that exists and is not empty
/// (nothing is overwritten) write nothing.
pub fn new_project(request: &NewProject<'_>) -> Result<PathBuf> {
    let templates: Vec<Template> = match request.lang {
        "rust" => RUST.to_vec(),
        "js" => [JS, WIT].concat(),
        "python" => [PYTHON, WIT].concat(),
        other => bail!(
            "--lang {:?} is not a language of `plugin new`: use {LANGUAGES}",
            crate::plugin::text::terminal_safe(&crate::plugin::text::cut(other, 40))
        ),
    };
    check_name(request.name)?;
    let sdk = match request.lang {
        "rust" => sdk_path(request.sdk)?,
        _ if request.sdk.is_some() => {
            bail!(
                "--sdk is the Rust SDK crate: a {} plugin does not use it",
                request.lang
            )
        }
        _ => PathBuf::new(),
    };
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
    let render = |template: &str| {
        fill(template, request.name)
            .replace("{{crate}}", &crate_name)
            // TOML basic string: escape what would end or break it.
            .replace(
                "{{sdk}}",
                &sdk_text.replace('\\', "\\\\").replace('"', "\\\""),
            )
    };
    for (file, template) in templates {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        std::fs::write(&path, render(template))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(dir)
}

/// A template with the plugin's name filled in.
fn fill(template: &str, name: &str) -> String {
    template.replace("{{name}}", name)
}

/// A plugin name is a Cargo package name kept simple: lowercase ASCII letters, digits, `-` and
/// `_`, starting with a letter.
pub(super) fn check_name(name: &str) -> Result<()> {
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
    fn an_unknown_language_or_a_misplaced_sdk_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("p");
        for (lang, sdk, expected) in [
            (
                "cobol",
                None,
                "is not a language of `plugin new`: use rust, js or python",
            ),
            ("JS", None, "is not a language"),
            ("js", Some(dir.path()), "--sdk is the Rust SDK crate"),
            ("python", Some(dir.path()), "--sdk is the Rust SDK crate"),
        ] {
            let err = new_project(&NewProject {
                name: "p",
                lang,
                dir: Some(&target),
                sdk,
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{lang}: {err}");
            assert!(!target.exists(), "{lang}");
        }
    }

    /// The examples `cargo xtask plugins --polyglot` builds and tests/tests/polyglot_plugins.rs
    /// runs in Docker are these templates, so what `plugin new` writes is tested end to end.
    #[test]
    fn the_polyglot_examples_are_the_templates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (template, example, name) in [
            (JS[0].1, "examples/js-shell/shell.js", "js-shell"),
            (PYTHON[0].1, "examples/python-shell/app.py", "python-shell"),
            (
                PYTHON[1].1,
                "examples/python-shell/adapter.py",
                "python-shell",
            ),
        ] {
            let written = std::fs::read_to_string(root.join(example)).unwrap();
            assert!(
                written == fill(template, name),
                "{example} differs from its template in host/aac-host/src/cli/templates/: \
                 change both"
            );
        }
    }

    /// A file added to `wit/` is copied into new JavaScript and Python projects too.
    #[test]
    fn every_wit_file_is_copied() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut on_disk: Vec<String> = std::fs::read_dir(wit)
            .unwrap()
            .map(|entry| format!("wit/{}", entry.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let copied: Vec<String> = WIT.iter().map(|(file, _)| file.to_string()).collect();
        assert_eq!(copied, on_disk);
    }

    #[test]
    fn a_js_and_a_python_project_carry_their_contract() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, source) in [("js", "plugin.js"), ("python", "adapter.py")] {
            let project = dir.path().join(lang);
            new_project(&NewProject {
                name: "my-agent",
                lang,
                dir: Some(&project),
                sdk: None,
            })
            .unwrap();
            let text = std::fs::read_to_string(project.join(source)).unwrap();
            assert!(text.contains("`my-agent`"), "{lang}: {text}");
            assert!(!text.contains("{{"), "{lang}: a placeholder left");
            let worlds = std::fs::read_to_string(project.join("wit/worlds.wit")).unwrap();
            assert!(worlds.starts_with("package aac:plugin@0.2.1;"), "{lang}");
            assert!(project.join("transcripts/hello.json").is_file(), "{lang}");
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
