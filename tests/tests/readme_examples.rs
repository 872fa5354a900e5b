//! The README's examples run as written (from the repository root, against the shipped
//! `aac.example.toml`), so they cannot drift from what the binary accepts.

use std::process::Command;

use aac_tests::aac_host_binary;

const README: &str = include_str!("../../README.md");

/// The README's command lines that start with `aac-host run `, split like a shell would for the
/// simple quoting they use (double quotes around the prompt).
fn run_examples() -> Vec<Vec<String>> {
    README
        .lines()
        .filter_map(|line| line.trim().strip_prefix("aac-host run "))
        .map(|rest| {
            let mut words = Vec::new();
            let mut rest = rest.trim();
            while !rest.is_empty() {
                if let Some(quoted) = rest.strip_prefix('"') {
                    let end = quoted.find('"').expect("a closing quote");
                    words.push(quoted[..end].to_string());
                    rest = quoted[end + 1..].trim_start();
                } else {
                    let end = rest.find(' ').unwrap_or(rest.len());
                    words.push(rest[..end].to_string());
                    rest = rest[end..].trim_start();
                }
            }
            words
        })
        .collect()
}

#[test]
fn the_readme_run_examples_work_against_the_example_config() {
    let examples = run_examples();
    assert!(!examples.is_empty(), "the README shows `aac-host run`");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    for words in examples {
        let workspace = tempfile::tempdir().unwrap();
        let output = Command::new(aac_host_binary())
            .current_dir(root)
            .arg("run")
            .args(&words)
            .arg("--workspace")
            .arg(workspace.path())
            .env("AAC_CACHE_DIR", cache.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "aac-host run {}\n{stdout}\n{stderr}",
            words.join(" ")
        );
        // Each example echoes what it was asked to.
        assert!(stdout.contains("hello"), "{stdout}");
    }
}
