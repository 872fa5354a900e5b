//! `[docker]`: host-wide settings of the engine's use.

use std::path::Path;

use super::HostConfig;

const RUNTIME: &str = "[runtimes.shell]\nplugin = \"shell.wasm\"\ndefault_version = \"1\"\n\
                       versions.\"1\".image = \"aac/busybox:latest\"\n";

fn parse(docker: &str) -> anyhow::Result<HostConfig> {
    HostConfig::parse(
        &format!("{RUNTIME}[docker]\n{docker}\n"),
        Path::new("conf/aac.toml"),
    )
}

#[test]
fn concurrent_starts_is_the_drivers_default_unless_written_and_bounded() {
    assert_eq!(parse("").unwrap().concurrent_starts, None);
    assert_eq!(
        parse("concurrent_starts = 3").unwrap().concurrent_starts,
        Some(3)
    );
    for (table, message) in [
        ("concurrent_starts = 0", "0 is out of range: from 1 to 64"),
        ("concurrent_starts = 65", "65 is out of range: from 1 to 64"),
        ("concurrent_starts = -1", "-1"),
        ("starts = 1", "unknown field `starts`"),
    ] {
        let shown = format!("{:#}", parse(table).unwrap_err());
        assert!(shown.starts_with("conf/aac.toml:"), "{shown}");
        assert!(shown.contains("docker"), "{shown}");
        assert!(shown.contains(message), "{message} in {shown}");
    }
}
