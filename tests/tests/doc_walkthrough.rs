//! docs/plugin-authoring.md, followed literally: every fenced block marked ```` ```sh test ```` is
//! run line by line with `sh` in one fresh directory outside the repository, `aac-host` on the
//! `PATH` (this build's binary) and cargo offline (its dependencies from the local cache). Each line
//! must succeed; a doc whose commands drift from the tool fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use aac_tests::aac_host_binary;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The command lines of every block fenced as ```` ```sh test ````, comments and blank lines
/// dropped, in order.
fn tested_commands(doc: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if !inside {
            inside = line.trim() == "```sh test";
            continue;
        }
        if line.trim_start().starts_with("```") {
            inside = false;
            continue;
        }
        let command = line.trim();
        if !command.is_empty() && !command.starts_with('#') {
            commands.push(command.to_string());
        }
    }
    commands
}

#[test]
fn the_plugin_authoring_walkthrough_runs_as_written() {
    let doc = std::fs::read_to_string(root().join("docs/plugin-authoring.md")).unwrap();
    let commands = tested_commands(&doc);
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("aac-host plugin new")),
        "the doc has a tested `plugin new` block: {commands:?}"
    );

    let work = tempfile::tempdir().unwrap();
    assert!(!work.path().starts_with(root()));
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(aac_host_binary(), bin.join("aac-host")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();

    for command in &commands {
        let output = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(work.path())
            .env("PATH", &path)
            .env("CARGO_NET_OFFLINE", "true")
            .env("AAC_CACHE_DIR", work.path().join("cache"))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`{command}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn only_blocks_marked_for_testing_are_taken() {
    let doc = "```sh\nrm -rf /\n```\n```sh test\n# a comment\naac-host plugin new x\n\n```\n";
    assert_eq!(tested_commands(doc), ["aac-host plugin new x"]);
}
