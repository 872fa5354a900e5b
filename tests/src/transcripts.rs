//! Transcripts recorded from real agent CLIs: a Docker test records one and replays it at once
//! (the plugin must emit the same without Docker); with `AAC_UPDATE_TRANSCRIPTS=1` it also writes
//! it to `plugins/<plugin>/transcripts/<name>.json`, which the no-Docker suite replays
//! (`host/aac-host/tests/plugin_transcripts.rs`).

use std::path::PathBuf;

use aac_host::sandbox::transcript::Transcript;

/// Where a first-party plugin's shipped transcripts live.
pub fn dir_of(plugin: &str) -> PathBuf {
    crate::workspace_root()
        .join("plugins")
        .join(plugin)
        .join("transcripts")
}

/// Replays `transcript` with the plugin and asserts it emits what the transcript says; writes it
/// as the shipped `name` when `AAC_UPDATE_TRANSCRIPTS` is set.
pub async fn replays_and_ships(plugin: &str, name: &str, transcript: &Transcript) {
    assert!(
        !transcript.processes.is_empty(),
        "the turn started no process"
    );
    let host = crate::test_host(None);
    let report = aac_host::replay::replay(&host, &crate::plugin(plugin), transcript)
        .await
        .expect("replaying the transcript");
    assert!(
        report.matches(),
        "replayed without Docker, {plugin} emitted something else: {:#?}",
        report.differences
    );
    if std::env::var_os("AAC_UPDATE_TRANSCRIPTS").is_some() {
        let dir = dir_of(plugin);
        std::fs::create_dir_all(&dir).unwrap();
        let text = serde_json::to_string_pretty(transcript).unwrap() + "\n";
        std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
    }
}
