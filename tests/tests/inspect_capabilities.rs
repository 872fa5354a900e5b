//! `aac-host plugin inspect --config --runtime` shows what a plugin declares, what the runtime
//! grants and what it gets, and refuses a plugin whose pin does not match.

use std::process::Command;

use aac_tests::{aac_host_binary, plugin};

#[test]
fn inspect_shows_declared_granted_and_effective_and_checks_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.wasm");
    std::fs::copy(plugin("test-hostile"), &hostile).unwrap();
    let config = dir.path().join("aac.toml");
    let write_config = |pin: &str| {
        std::fs::write(
            &config,
            format!(
                "[runtimes.h]\nplugin = \"hostile.wasm\"\n{pin}default_version = \"1\"\n\
                 versions.\"1\".image = \"x\"\ngrants = {{ env = [\"PATH\", \"USER\"] }}\n"
            ),
        )
        .unwrap()
    };
    let inspect = || {
        Command::new(aac_host_binary())
            .args([
                "--no-cache",
                "plugin",
                "inspect",
                "--json",
                "--runtime",
                "h",
            ])
            .arg("--config")
            .arg(&config)
            .arg(&hostile)
            .output()
            .unwrap()
    };

    write_config("");
    let out = inspect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let caps = &json["capabilities"];
    assert_eq!(caps["declared"]["env"], serde_json::json!(["PATH", "HOME"]));
    assert_eq!(caps["granted"]["env"], serde_json::json!(["PATH", "USER"]));
    assert_eq!(caps["effective"]["env"], serde_json::json!(["PATH"]));
    assert_eq!(json["integrity"]["pinned"], false);

    write_config(&format!("plugin_sha256 = \"{}\"\n", "0".repeat(64)));
    let out = inspect();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hostile.wasm refused: its sha256 is"),
        "{stderr}"
    );
}
