//! The SDK stands on its own: its WIT is the repository's, and a plugin project created outside
//! the repository from docs/plugin-authoring.md's own text, depending on `sdk/` by path, builds
//! for wasm32-wasip2 and runs through the real `aac-host` binary (inspect, then a turn in the
//! busybox sandbox).

use std::path::{Path, PathBuf};
use std::process::Command;

use aac_tests::aac_host_binary;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// File name → contents of every file directly in `dir`.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// `wit/` is the canonical contract; `sdk/wit/` is the copy the SDK builds from.
#[test]
fn the_sdk_carries_the_repositorys_wit_unchanged() {
    let canonical = files(&root().join("wit"));
    let copy = files(&root().join("sdk/wit"));
    let names = |map: &std::collections::BTreeMap<String, Vec<u8>>| -> Vec<String> {
        map.keys().cloned().collect()
    };
    assert_eq!(
        names(&canonical),
        names(&copy),
        "sdk/wit/ must hold exactly the files of wit/: copy them with `cp wit/* sdk/wit/`"
    );
    for (name, text) in &canonical {
        assert!(
            copy[name] == *text,
            "sdk/wit/{name} differs from wit/{name}: copy it with `cp wit/* sdk/wit/`"
        );
    }
}

/// The first fenced block of `language` after `heading` in the markdown `doc`.
fn code_block(doc: &str, heading: &str, language: &str) -> String {
    let section = &doc[doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in the doc"))..];
    let fence = format!("```{language}\n");
    let start = section
        .find(&fence)
        .unwrap_or_else(|| panic!("no {language} block under {heading:?}"))
        + fence.len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

#[test]
fn a_plugin_outside_the_repository_builds_from_the_doc_and_runs() {
    let doc = std::fs::read_to_string(root().join("docs/plugin-authoring.md")).unwrap();
    let manifest = code_block(&doc, "## A backend adapter", "toml");
    let source = code_block(&doc, "## A backend adapter", "rust");
    let sdk_line = manifest
        .lines()
        .find(|line| line.starts_with("aac-sdk"))
        .expect("the doc's Cargo.toml depends on aac-sdk");
    assert!(
        sdk_line.contains("path = "),
        "the doc shows a path dependency: {sdk_line}"
    );

    // A project in the system temp dir: no workspace of this repository above it.
    let project = tempfile::tempdir().unwrap();
    assert!(!project.path().starts_with(root()));
    let sdk = root().join("sdk");
    let manifest = manifest.replace(
        sdk_line,
        &format!("aac-sdk = {{ path = {:?} }}", sdk.display().to_string()),
    );
    std::fs::write(
        project.path().join("Cargo.toml"),
        format!("{manifest}\n[workspace]\n"),
    )
    .unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::write(project.path().join("src/lib.rs"), source).unwrap();
    // The repository's lock file pins the versions it was tested with (and lets the build run
    // offline from the local cache); cargo drops what the project does not use.
    std::fs::copy(root().join("Cargo.lock"), project.path().join("Cargo.lock")).unwrap();

    let target_dir = root().join("target/standalone-plugin");
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(project.path())
        .args(["build", "--offline", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "the doc's plugin did not build outside the repository:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = target_dir.join("wasm32-wasip2/debug/echo.wasm");

    let inspect = Command::new(aac_host_binary())
        .args(["--no-cache", "plugin", "inspect", "--json"])
        .arg(&wasm)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success(),
        "inspect failed: {stdout}{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let info: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["name"], "echo", "{info}");
    assert_eq!(info["description"], "Says the prompt back.", "{info}");

    let run = Command::new(aac_host_binary())
        .args(["--no-cache", "run", "--plugin"])
        .arg(&wasm)
        .arg("hello from outside")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "run failed: {stdout}{stderr}");
    assert!(
        stdout.contains("hello from outside"),
        "the echoed prompt is missing: {stdout}{stderr}"
    );
}

/// The SDK is publishable: `cargo package` accepts it (together with aac-event-bounds, its one
/// path dependency, which a registry would get first) and the package carries the WIT and the
/// event registry, so a build from the package needs nothing of this repository.
#[test]
fn the_sdk_packages_with_its_wit() {
    let target_dir = root().join("target/sdk-package");
    let package = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args([
            "package",
            "-p",
            "aac-event-bounds",
            "-p",
            "aac-sdk",
            "--allow-dirty",
            "--no-verify",
            "--offline",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .unwrap();
    assert!(
        package.status.success(),
        "cargo package failed:\n{}",
        String::from_utf8_lossy(&package.stderr)
    );
    let manifest = std::fs::read_to_string(root().join("sdk/Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = "))
        .expect("sdk/Cargo.toml states its version")
        .trim_matches('"');
    let crate_file = target_dir.join(format!("package/aac-sdk-{version}.crate"));
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&crate_file)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in ["wit/worlds.wit", "wit/types.wit", "wit/events.schema.json"] {
        assert!(
            listing.contains(&format!("aac-sdk-{version}/{file}")),
            "{file} is not in the package:\n{listing}"
        );
    }
}
