//! docs/plugin-authoring.md, followed literally: every fenced block marked ```` ```sh test ```` is
//! run line by line with `sh` in one fresh directory outside the repository, `aac-host` on the
//! `PATH` (this build's binary) and cargo offline (its dependencies from the local cache). Each line
//! must succeed; a doc whose commands drift from the tool fails here. A block marked
//! ```` ```sh test PROGRAM ```` (the JavaScript and Python walkthroughs: `node`, `python3`) is
//! skipped, saying so, when PROGRAM is not installed; their pinned build tools come from
//! target/polyglot/tools (installed there on first use), not from the network each time.

use std::path::{Path, PathBuf};
use std::process::Command;

use aac_tests::aac_host_binary;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One tested command line and the program its block needs, if any.
#[derive(Debug, PartialEq)]
struct Tested {
    command: String,
    needs: Option<String>,
}

/// The command lines of every block fenced as ```` ```sh test ```` (or ```` ```sh test PROGRAM
/// ````), comments and blank lines dropped, in order.
fn tested_commands(doc: &str) -> Vec<Tested> {
    let mut commands = Vec::new();
    let mut inside = None;
    for line in doc.lines() {
        let Some(needs) = &inside else {
            let mut words = line.split_whitespace();
            if words.next() == Some("```sh") && words.next() == Some("test") {
                let needs = words.next().map(str::to_string);
                if words.next().is_none() {
                    inside = Some(needs);
                }
            }
            continue;
        };
        if line.trim_start().starts_with("```") {
            inside = None;
            continue;
        }
        let command = line.trim();
        if !command.is_empty() && !command.starts_with('#') {
            commands.push(Tested {
                command: command.to_string(),
                needs: needs.clone(),
            });
        }
    }
    commands
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn the_plugin_authoring_walkthrough_runs_as_written() {
    let doc = std::fs::read_to_string(root().join("docs/plugin-authoring.md")).unwrap();
    let commands = tested_commands(&doc);
    assert!(
        commands
            .iter()
            .any(|c| c.command.starts_with("aac-host plugin new")),
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

    for Tested { command, needs } in &commands {
        if let Some(program) = needs
            && !installed(program)
        {
            eprintln!("SKIPPED: `{command}` needs `{program}`, which is not installed");
            continue;
        }
        let output = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(work.path())
            .env("PATH", &path)
            .env("CARGO_NET_OFFLINE", "true")
            .env("AAC_CACHE_DIR", work.path().join("cache"))
            .env("AAC_TOOLS_DIR", root().join("target/polyglot/tools"))
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
    let doc = "```sh\nrm -rf /\n```\n```sh test\n# a comment\naac-host plugin new x\n\n```\n\
               ```sh test node\nnpm test\n```\n```sh testing\nrm -rf /\n```\n";
    assert_eq!(
        tested_commands(doc),
        [
            Tested {
                command: "aac-host plugin new x".into(),
                needs: None
            },
            Tested {
                command: "npm test".into(),
                needs: Some("node".into())
            },
        ]
    );
}
