//! `aac-host plugin new` writes a backend project that builds as it is, in Rust, JavaScript and
//! Python: created in a temporary directory outside the repository, built with `aac-host plugin
//! build`, then inspected and replayed against its own transcript with the real binary (no
//! Docker). JavaScript and Python use the pinned tools in target/polyglot/tools (`cargo xtask
//! plugins --polyglot` installs them; else the first build does) and are skipped, saying so, when
//! node or python3 is missing.

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
    // Shared with other runs of this test: the SDK and serde compile once, the tools install once.
    command.env("CARGO_TARGET_DIR", root().join("target/plugin-new"));
    command.env("AAC_TOOLS_DIR", root().join("target/polyglot/tools"));
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

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `plugin new --lang LANG`, `plugin build`, `plugin inspect`, `plugin test`, as an author would.
fn a_polyglot_plugin_builds_inspects_and_passes_its_transcript(lang: &str, tool: &str) {
    if !installed(tool) {
        eprintln!("SKIPPED: `{tool}` is not on PATH, so a {lang} plugin cannot be built");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    assert!(!temp.path().starts_with(root()));
    let name = format!("my-{lang}-agent");
    let project = temp.path().join(&name);

    let created = aac_host(
        &["plugin", "new", &name, "--lang", lang, "--dir"],
        Some(&project),
    );
    assert!(created.status.success(), "{}", text(&created));
    let wasm = project.join(format!("build/{name}.wasm"));
    assert!(!wasm.exists());

    // Bad input writes nothing: a bad name, the same directory again.
    let bad_dir = temp.path().join("bad");
    let bad = aac_host(
        &["plugin", "new", "My Agent", "--lang", lang, "--dir"],
        Some(&bad_dir),
    );
    assert!(!bad.status.success());
    assert!(text(&bad).contains("is not valid"), "{}", text(&bad));
    assert!(!bad_dir.exists());
    let again = aac_host(
        &["plugin", "new", &name, "--lang", lang, "--dir"],
        Some(&project),
    );
    assert!(text(&again).contains("is not empty"), "{}", text(&again));

    let built = aac_host(&["plugin", "build"], Some(&project));
    assert!(built.status.success(), "{}", text(&built));
    let stdout = String::from_utf8_lossy(&built.stdout);
    let printed = PathBuf::from(stdout.trim().lines().last().expect("the component's path"));
    assert_eq!(printed, wasm.canonicalize().unwrap(), "{stdout}");

    // One compile (seconds for these large components) serves inspect and test.
    let cache = temp.path().join("cache");
    let cache = cache.to_str().unwrap();
    let inspect = aac_host(
        &["plugin", "inspect", "--cache-dir", cache, "--json"],
        Some(&wasm),
    );
    assert!(inspect.status.success(), "{}", text(&inspect));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["name"], name.as_str(), "{info}");
    assert_eq!(info["world"], "backend", "{info}");
    assert_eq!(info["wit_version"], "0.2.1", "{info}");

    let transcript = project.join("transcripts/hello.json");
    let mut test = Command::new(aac_host_binary());
    test.args(["plugin", "test", "--cache-dir", cache])
        .arg(&wasm)
        .arg("--transcript")
        .arg(&transcript);
    let replayed = test.output().unwrap();
    assert!(replayed.status.success(), "{}", text(&replayed));
    assert!(
        text(&replayed).contains("ok: 1 command(s)"),
        "{}",
        text(&replayed)
    );

    // The transcript is a real check: an edited expectation fails it.
    let edited = std::fs::read_to_string(&transcript)
        .unwrap()
        .replace(r#""text": "hello""#, r#""text": "goodbye""#);
    std::fs::write(&transcript, edited).unwrap();
    let failed = test.output().unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("differs:"), "{}", text(&failed));
}

#[test]
fn a_new_javascript_plugin_builds_inspects_and_passes_its_transcript() {
    a_polyglot_plugin_builds_inspects_and_passes_its_transcript("js", "node");
}

#[test]
fn a_new_python_plugin_builds_inspects_and_passes_its_transcript() {
    a_polyglot_plugin_builds_inspects_and_passes_its_transcript("python", "python3");
}

/// Without node (or python3) on PATH, `plugin build` names the missing tool and what it is for,
/// and writes nothing into the project.
#[test]
fn a_missing_toolchain_is_named_and_nothing_is_written() {
    let temp = tempfile::tempdir().unwrap();
    let empty_path = temp.path().join("no-tools");
    std::fs::create_dir(&empty_path).unwrap();
    for (lang, missing) in [
        ("js", "`node` is not on PATH"),
        ("python", "`python3` is not on PATH"),
    ] {
        let project = temp.path().join(lang);
        let created = aac_host(
            &["plugin", "new", "p", "--lang", lang, "--dir"],
            Some(&project),
        );
        assert!(created.status.success(), "{}", text(&created));
        let before = files_in(&project);
        let output = Command::new(aac_host_binary())
            .args(["plugin", "build"])
            .arg(&project)
            .env("PATH", &empty_path)
            .env("AAC_TOOLS_DIR", temp.path().join("tools"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{lang}: {}", text(&output));
        assert!(text(&output).contains(missing), "{lang}: {}", text(&output));
        assert_eq!(files_in(&project), before, "{lang}");
        assert!(!temp.path().join("tools").exists(), "{lang}");
    }
}

/// `--offline` never installs: a tool missing from the tools directory is an error saying how to
/// get it.
#[test]
fn offline_builds_do_not_install_tools() {
    let temp = tempfile::tempdir().unwrap();
    for (lang, tool, name) in [
        ("js", "node", "jco"),
        ("python", "python3", "componentize-py"),
    ] {
        if !installed(tool) {
            eprintln!("SKIPPED ({lang}): `{tool}` is not on PATH");
            continue;
        }
        let project = temp.path().join(lang);
        let created = aac_host(
            &["plugin", "new", "p", "--lang", lang, "--dir"],
            Some(&project),
        );
        assert!(created.status.success(), "{}", text(&created));
        let output = Command::new(aac_host_binary())
            .args(["plugin", "build", "--offline", "--tools-dir"])
            .arg(temp.path().join("tools"))
            .arg(&project)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{lang}: {}", text(&output));
        let message = text(&output);
        assert!(
            message.contains(&format!("{name} is not installed in the tools directory"))
                && message.contains("--offline forbids installing it"),
            "{lang}: {message}"
        );
        assert!(!project.join("build").exists(), "{lang}");
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            files.push(path);
        }
    }
    files.sort();
    files
}
