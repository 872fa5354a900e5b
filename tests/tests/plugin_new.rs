//! `aac-host plugin new` writes a backend project that builds as it is: created in a temporary
//! directory outside the repository, built with `aac-host plugin build`, then inspected and
//! replayed against its own transcript with the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aac_tests::aac_host_binary;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn aac_host(args: &[&str], dir_arg: Option<&Path>) -> Output {
    let mut command = Command::new(aac_host_binary());
    command.args(args);
    if let Some(dir) = dir_arg {
        command.arg(dir);
    }
    // Shared with other runs of this test: the SDK and serde compile once.
    command.env("CARGO_TARGET_DIR", root().join("target/plugin-new"));
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_new_plugin_builds_inspects_and_passes_its_transcript() {
    let temp = tempfile::tempdir().unwrap();
    assert!(!temp.path().starts_with(root()));
    let project = temp.path().join("my-echo");

    let created = aac_host(
        &["plugin", "new", "my-echo", "--lang", "rust", "--dir"],
        Some(&project),
    );
    assert!(created.status.success(), "{}", text(&created));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "README.md",
        "transcripts/hello.json",
    ] {
        assert!(project.join(file).is_file(), "{file} was not written");
    }
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    let sdk = root().join("sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!("aac-sdk = {{ path = \"{}\" }}", sdk.display())),
        "the SDK by absolute path: {manifest}"
    );

    // A second `new` into the same directory loses nothing.
    let again = aac_host(&["plugin", "new", "my-echo", "--dir"], Some(&project));
    assert!(!again.status.success());
    assert!(text(&again).contains("is not empty"), "{}", text(&again));

    let built = aac_host(&["plugin", "build", "--offline"], Some(&project));
    assert!(built.status.success(), "{}", text(&built));
    let stdout = String::from_utf8_lossy(&built.stdout);
    let wasm = PathBuf::from(stdout.trim().lines().last().expect("the component's path"));
    assert!(wasm.is_file(), "{}", wasm.display());
    assert!(
        wasm.ends_with("wasm32-wasip2/release/my_echo.wasm"),
        "{}",
        wasm.display()
    );

    let inspect = aac_host(&["--no-cache", "plugin", "inspect", "--json"], Some(&wasm));
    assert!(inspect.status.success(), "{}", text(&inspect));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["name"], "my-echo", "{info}");
    assert_eq!(info["world"], "backend", "{info}");
    assert_eq!(info["wit_version"], "0.2.1", "{info}");

    let transcript = project.join("transcripts/hello.json");
    let mut test = Command::new(aac_host_binary());
    test.args(["--no-cache", "plugin", "test"])
        .arg(&wasm)
        .arg("--transcript")
        .arg(&transcript);
    let replayed = test.output().unwrap();
    assert!(replayed.status.success(), "{}", text(&replayed));

    // The transcript is a real check: an edited expectation fails it.
    let edited = std::fs::read_to_string(&transcript)
        .unwrap()
        .replace(r#""text": "hello""#, r#""text": "goodbye""#);
    std::fs::write(&transcript, edited).unwrap();
    let failed = test.output().unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
}

#[test]
fn plugin_new_for_js_says_it_is_not_supported_yet() {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("js-one");
    let output = aac_host(
        &["plugin", "new", "js-one", "--lang", "js", "--dir"],
        Some(&project),
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not supported yet"),
        "{}",
        text(&output)
    );
    assert!(!project.exists());
}
