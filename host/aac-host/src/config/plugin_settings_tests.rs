//! `[limits]`, `[trust]`, `[bundles]` and a runtime's `limits` / `trust`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, HostConfig};
use crate::plugin::{BundleLimits, PluginLimits};

const RUNTIME: &str = r#"
[runtimes.shell]
plugin = "shell.wasm"
default_version = "1"
versions."1".image = "aac/busybox:latest"
"#;

/// A valid ed25519 public key (of the secret key [1; 32]).
const KEY: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

fn parse(text: &str) -> anyhow::Result<HostConfig> {
    HostConfig::parse(text, Path::new("conf/aac.toml"))
}

#[track_caller]
fn assert_error(text: &str, needle: &str, key: &str, message: &str) {
    let err = parse(text).expect_err("the config should be refused");
    let shown = err.to_string();
    let parts = err.downcast_ref::<ConfigError>().expect("a ConfigError");
    let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        shown.starts_with(&format!("conf/aac.toml:{line}: {key}: ")),
        "expected line {line} and key {key} in: {shown}"
    );
    assert_eq!(parts.key.as_deref(), Some(key), "{shown}");
    assert!(shown.contains(message), "expected {message:?} in: {shown}");
}

#[test]
fn defaults_when_nothing_is_set() {
    let config = parse(RUNTIME).unwrap();
    assert_eq!(config.limits, PluginLimits::default());
    assert_eq!(config.runtimes["shell"].limits, PluginLimits::default());
    assert!(config.trust.keys.is_empty());
    assert!(!config.trust.require_signature);
    assert!(config.bundles.is_none());
    let integrity = config.runtimes["shell"].integrity();
    assert!(integrity.keys.is_empty() && integrity.sha256.is_none());
}

#[test]
fn host_limits_apply_to_runtimes_which_may_override_them() {
    let text = format!(
        r#"
[limits]
memory = "128MiB"
call_cpu = "5s"
turn_cpu = "2m"
cpu_share = 0.5
cpu_burst = "2s"
paced_cpu = 0.5
call_wall = "90s"
turn_wall = "3h"
event_size = "64KiB"
events_per_second = 50
turn_output = "8MiB"
result_size = "4KiB"
process_starts_per_second = 0.5
process_start_burst = 3
paced_process_starts = 1.5
{RUNTIME}
limits = {{ memory = "32MiB", turn_cpu = "30s", cpu_share = 1.0, process_start_burst = 20 }}
"#
    );
    let config = parse(&text).unwrap();
    let host = PluginLimits {
        memory_bytes: 128 << 20,
        call_cpu: Duration::from_secs(5),
        turn_cpu: Duration::from_secs(120),
        cpu_share: 0.5,
        cpu_burst: Duration::from_secs(2),
        paced_cpu: 0.5,
        call_wall: Duration::from_secs(90),
        turn_wall: Duration::from_secs(3 * 3600),
        event_bytes: 64 << 10,
        events_per_second: 50,
        turn_output_bytes: 8 << 20,
        result_bytes: 4 << 10,
        process_starts_per_second: 0.5,
        process_start_burst: 3,
        paced_process_starts: 1.5,
    };
    assert_eq!(config.limits, host);
    assert_eq!(
        config.runtimes["shell"].limits,
        PluginLimits {
            memory_bytes: 32 << 20,
            turn_cpu: Duration::from_secs(30),
            cpu_share: 1.0,
            process_start_burst: 20,
            ..host
        }
    );
}

#[test]
fn bad_limits_name_file_line_and_key() {
    assert_error(
        &format!("[limits]\nmemory = \"512KiB\"\n{RUNTIME}"),
        "memory",
        "limits.memory",
        "below the minimum of 1MiB",
    );
    assert_error(
        &format!("[limits]\nturn_cpu = \"0s\"\n{RUNTIME}"),
        "turn_cpu",
        "limits.turn_cpu",
        "longer than 0s",
    );
    for share in ["0", "1.5", "-0.25", "nan"] {
        assert_error(
            &format!("[limits]\ncpu_share = {share}\n{RUNTIME}"),
            "cpu_share",
            "limits.cpu_share",
            "expected a number in (0, 1]",
        );
    }
    for cores in ["0", "-1", "inf"] {
        assert_error(
            &format!("[limits]\npaced_cpu = {cores}\n{RUNTIME}"),
            "paced_cpu",
            "limits.paced_cpu",
            "expected a number above 0",
        );
    }
    assert_error(
        &format!("{RUNTIME}limits = {{ paced_cpu = 0.5 }}\n"),
        "limits =",
        "runtimes.shell.limits.paced_cpu",
        "set paced_cpu in [limits]",
    );
    for rate in ["0", "-1", "inf"] {
        assert_error(
            &format!("[limits]\npaced_process_starts = {rate}\n{RUNTIME}"),
            "paced_process_starts",
            "limits.paced_process_starts",
            "expected a number above 0",
        );
    }
    assert_error(
        &format!("{RUNTIME}limits = {{ paced_process_starts = 3 }}\n"),
        "limits =",
        "runtimes.shell.limits.paced_process_starts",
        "set paced_process_starts in [limits]",
    );
    for rate in ["0", "-2", "inf"] {
        assert_error(
            &format!("[limits]\nprocess_starts_per_second = {rate}\n{RUNTIME}"),
            "process_starts_per_second",
            "limits.process_starts_per_second",
            "expected a number above 0",
        );
    }
    assert_error(
        &format!("{RUNTIME}limits = {{ process_start_burst = 0 }}\n"),
        "limits =",
        "runtimes.shell.limits.process_start_burst",
        "greater than 0",
    );
    assert_error(
        &format!("[limits]\nevents_per_second = 0\n{RUNTIME}"),
        "events_per_second",
        "limits.events_per_second",
        "greater than 0",
    );
    assert_error(
        &format!("[limits]\nevent_bytes = 10\n{RUNTIME}"),
        "event_bytes",
        "limits.event_bytes",
        "unknown field `event_bytes`",
    );
    assert_error(
        &format!("{RUNTIME}limits = {{ memory = \"1GiB\" }}\n"),
        "limits =",
        "runtimes.shell.limits.memory",
        "above the host's [limits] memory",
    );
}

#[test]
fn trust_keys_add_up_and_are_validated() {
    let text = format!(
        "[trust]\nkeys = [\"{}\"]\n{RUNTIME}trust = {{ require_signature = true }}\n",
        KEY.to_uppercase()
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.trust.keys, [KEY]);
    assert!(!config.trust.require_signature);
    let shell = &config.runtimes["shell"];
    assert!(shell.trust.require_signature);
    let integrity = shell.integrity();
    assert_eq!(integrity.keys.len(), 1);
    assert!(integrity.require_signature);

    assert_error(
        &format!("[trust]\nkeys = [\"abc\"]\n{RUNTIME}"),
        "keys",
        "trust.keys",
        "expected 64 hex digits",
    );
    assert_error(
        &format!("{RUNTIME}trust = {{ keys = [\"{}\"] }}\n", "g".repeat(64)),
        "trust =",
        "runtimes.shell.trust.keys",
        "not an ed25519 public key",
    );
}

#[test]
fn bundles_settings() {
    let text = format!(
        r#"{RUNTIME}
[bundles]
plugin = "plugins/bundle.wasm"
plugin_sha256 = "{}"
grants = {{ http = ["127.0.0.1:8080", "*.bundles.corp"] }}
max_files = 5000
max_bytes = "1GiB"
cpu = "5m"
wall = "1h"
"#,
        "AB".repeat(32)
    );
    let config = parse(&text).unwrap();
    let bundles = config.bundles.unwrap();
    assert_eq!(bundles.plugin, PathBuf::from("conf/plugins/bundle.wasm"));
    assert_eq!(bundles.plugin_sha256, Some("ab".repeat(32)));
    assert_eq!(bundles.grants.http, ["127.0.0.1:8080", "*.bundles.corp"]);
    assert_eq!(
        bundles.limits,
        BundleLimits {
            max_files: 5000,
            max_bytes: 1 << 30
        }
    );
    let options = bundles.options();
    assert_eq!(options.cpu, Some(Duration::from_secs(300)));
    assert_eq!(options.wall, Some(Duration::from_secs(3600)));
    assert_eq!(bundles.integrity().sha256, Some("ab".repeat(32)));

    assert_error(
        &format!("{RUNTIME}[bundles]\nplugin = \"b.wasm\"\nwall = \"0s\"\n"),
        "wall",
        "bundles.wall",
        "longer than 0s",
    );
    assert_error(
        &format!("{RUNTIME}[bundles]\nplugin = \"b.wasm\"\nmax_files = 0\n"),
        "max_files",
        "bundles.max_files",
        "greater than 0",
    );
    assert_error(
        &format!("{RUNTIME}[bundles]\nplugin = \"b.wasm\"\ngrants = {{ http = [\"a b\"] }}\n"),
        "grants",
        "bundles.grants.http",
        "invalid host",
    );
    assert_error(
        &format!("{RUNTIME}[bundles]\nplugin = \"b.wasm\"\nplugin_sha256 = \"xyz\"\n"),
        "plugin_sha256",
        "bundles.plugin_sha256",
        "expected 64 hex digits",
    );
}

/// The `[limits]`, `[trust]` and `[bundles]` examples of the docs and aac.example.toml parse.
#[test]
fn documented_examples_parse() {
    let docs = [
        include_str!("../../../../docs/configuration.md"),
        include_str!("../../../../docs/bundles.md"),
    ];
    let mut seen = 0;
    for doc in docs {
        for block in doc.split("```toml\n").skip(1) {
            let block = &block[..block.find("```").unwrap()];
            if ["[limits]", "[trust]", "[bundles]"]
                .iter()
                .any(|table| block.starts_with(table))
            {
                parse(&format!("{RUNTIME}{block}"))
                    .unwrap_or_else(|err| panic!("{err:#}\n{block}"));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 3);
    let example = parse(include_str!("../../../../aac.example.toml")).unwrap();
    assert_eq!(example.limits, PluginLimits::default());
    let bundles = example.bundles.unwrap();
    assert_eq!(bundles.limits, BundleLimits::default());
    assert_eq!(bundles.cpu, Duration::from_secs(120));
}
