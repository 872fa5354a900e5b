//! Replay tests without Docker: every transcript a first-party plugin ships
//! (`plugins/*/transcripts/*.json`, recorded from the real CLIs) replays through `aac-host plugin
//! test` with the plugin built from this checkout, and a transcript that no longer matches what the
//! plugin does is reported as a difference, naming it.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `aac-host plugin test PLUGIN --transcript FILE`, with an artifact cache of these tests' own.
fn plugin_test(plugin: &str, transcript: &Path) -> Output {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    std::process::Command::new(env!("CARGO_BIN_EXE_aac-host"))
        .args(["plugin", "test"])
        .arg(aac_tests::plugin(plugin))
        .arg("--transcript")
        .arg(transcript)
        .env("AAC_CACHE_DIR", cache.path())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The shell plugin's shipped transcript, changed by `change`, in a temp file.
fn changed_shell_transcript(change: impl FnOnce(&mut Value)) -> tempfile::NamedTempFile {
    let path = repo().join("plugins/shell/transcripts/exit-code.json");
    let mut transcript: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut transcript);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), transcript.to_string()).unwrap();
    file
}

#[test]
fn every_shipped_transcript_replays_without_docker() {
    let mut replayed = 0;
    for plugin in std::fs::read_dir(repo().join("plugins")).unwrap() {
        let plugin = plugin.unwrap();
        let Ok(transcripts) = std::fs::read_dir(plugin.path().join("transcripts")) else {
            continue;
        };
        let name = plugin.file_name().into_string().unwrap();
        for transcript in transcripts {
            let transcript = transcript.unwrap().path();
            let output = plugin_test(&name, &transcript);
            assert!(
                output.status.success() && text(&output).starts_with("ok: "),
                "{}: {}",
                transcript.display(),
                text(&output)
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 4, "only {replayed} transcripts found");
}

#[test]
fn output_the_plugin_now_reads_differently_is_a_named_difference() {
    let file = changed_shell_transcript(|t| {
        let output = t["processes"][0]["output"].as_array_mut().unwrap();
        let stderr = output
            .iter_mut()
            .find(|chunk| chunk["stream"] == "stderr")
            .unwrap();
        stderr["text"] = "changed\n".into();
    });
    let output = plugin_test("shell", file.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("emitted cmd-1 output.stderr {\"text\":\"changed\"}, the transcript has cmd-1 output.stderr {\"text\":\"oops\"}"),
        "{said}"
    );
}

#[test]
fn a_process_the_transcript_does_not_have_next_is_named() {
    let file = changed_shell_transcript(|t| {
        t["commands"][0]["prompt"] = "echo something else".into();
    });
    let output = plugin_test("shell", file.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("the plugin started `/bin/sh -c echo something else`, which the transcript does not have next"),
        "{said}"
    );
    assert!(
        said.contains("1 recorded process(es) were never started"),
        "{said}"
    );
}

#[test]
fn a_broken_transcript_is_an_error_naming_the_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), r#"{"version": 1, "processes": "#).unwrap();
    let output = plugin_test("shell", file.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains(&file.path().display().to_string()),
        "{}",
        text(&output)
    );
}
