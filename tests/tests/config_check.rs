//! `aac-host config check FILE` validates a config without running anything: a good one passes;
//! a wrong plugin pin and a missing image are each named with their runtime version.

use std::process::Command;

use aac_tests::{aac_host_binary, plugin};

fn check(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aac.toml");
    std::fs::write(&file, config).unwrap();
    let output = Command::new(aac_host_binary())
        .args(["config", "check"])
        .arg(&file)
        .env("AAC_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_good_config_passes_and_a_bad_pin_and_a_missing_image_are_named() {
    let shell = plugin("shell");
    let good = format!(
        "[runtimes.shell]\nplugin = {shell:?}\ndefault_version = \"1\"\nversions.\"1\".image = \"aac/busybox:latest\"\n"
    );
    let (code, stdout, stderr) = check(&good);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok (1 runtime version checked)"),
        "{stdout}"
    );

    let bad = format!(
        "[runtimes.shell]\nplugin = {shell:?}\nplugin_sha256 = \"{}\"\ndefault_version = \"1\"\n\
         versions.\"1\".image = \"aac/busybox:latest\"\n\
         versions.\"2\".image = \"aac/no-such-image-for-config-check:0\"\n",
        "0".repeat(64)
    );
    let (code, stdout, stderr) = check(&bad);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("shell@1: plugin:"), "{stderr}");
    assert!(
        stderr.contains("shell@2") && stderr.contains("aac/no-such-image-for-config-check:0"),
        "{stderr}"
    );
    assert!(stderr.contains("problem(s)"), "{stderr}");
}
