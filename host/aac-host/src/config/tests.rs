use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Every key set (the DESIGN.md example plus a pin).
const FULL: &str = r#"
[runtimes.codex]
plugin = "plugins/codex.wasm"
plugin_sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
default_version = "0.169"
versions."0.169".image = "aac/codex:0.169.0"
versions."0.168".image = "aac/codex:0.168.2"
sandbox = { cpus = 2.0, memory = "4GiB", pids = 512, network = "bridge", user = "1000:1000" }
env = { RUST_LOG = "info" }
secrets = { OPENAI_API_KEY = { env = "HOST_OPENAI_KEY" }, TOKEN = { file = "secrets/token" } }
warm_pool = 2
session_idle_timeout = "1h30m"
max_session_duration = "8h"
pull_policy = "never"
grants = { http = ["api.openai.com"], env = ["RUST_LOG"] }
"#;

/// The smallest valid profile.
const MINIMAL: &str = r#"
[runtimes.shell]
plugin = "shell.wasm"
default_version = "1"
versions."1".image = "aac/busybox:latest"
"#;

fn parse(text: &str) -> Result<HostConfig> {
    HostConfig::parse(text, Path::new("conf/aac.toml"))
}

/// The error of `text`, as displayed and as its parts.
fn error(text: &str) -> (String, ConfigError) {
    let err = parse(text).expect_err("the config should be refused");
    let parts = err
        .downcast_ref::<ConfigError>()
        .expect("a ConfigError")
        .clone();
    (err.to_string(), parts)
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

/// `MINIMAL` with `line` added to the profile.
fn minimal_with(line: &str) -> String {
    format!("{MINIMAL}{line}\n")
}

/// Asserts the error of `text` names the file, the line containing `needle`, and `key`.
#[track_caller]
fn assert_error(text: &str, needle: &str, key: &str, message: &str) {
    let (shown, parts) = error(text);
    let line = line_of(text, needle);
    assert!(
        shown.starts_with(&format!("conf/aac.toml:{line}: {key}: ")),
        "expected file, line {line} and key {key} in: {shown}"
    );
    assert_eq!(parts.line, Some(line), "{shown}");
    assert_eq!(parts.key.as_deref(), Some(key), "{shown}");
    assert!(shown.contains(message), "expected {message:?} in: {shown}");
}

#[test]
fn full_profile_parses_every_field() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.source, PathBuf::from("conf/aac.toml"));
    assert_eq!(config.runtimes.len(), 1);
    let codex = &config.runtimes["codex"];
    assert_eq!(codex.name, "codex");
    assert_eq!(codex.line, 2);
    assert_eq!(codex.plugin, PathBuf::from("conf/plugins/codex.wasm"));
    assert_eq!(
        codex.plugin_sha256.as_deref(),
        Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    );
    assert_eq!(codex.default_version, "0.169");
    assert_eq!(codex.versions.len(), 2);
    assert_eq!(codex.versions["0.169"].image, "aac/codex:0.169.0");
    assert_eq!(codex.versions["0.168"].image, "aac/codex:0.168.2");
    assert_eq!(
        codex.sandbox,
        SandboxSettings {
            cpus: Some(2.0),
            memory_bytes: Some(4 << 30),
            pids: Some(512),
            network: NetworkMode::Bridge,
            egress_allow: Default::default(),
            egress_hosts: Default::default(),
            user: Some("1000:1000".into()),
            runtime: None,
        }
    );
    assert_eq!(
        codex.env,
        BTreeMap::from([("RUST_LOG".to_string(), "info".to_string())])
    );
    assert_eq!(
        codex.secrets,
        BTreeMap::from([
            (
                "OPENAI_API_KEY".to_string(),
                SecretSource::Env("HOST_OPENAI_KEY".into())
            ),
            (
                "TOKEN".to_string(),
                SecretSource::File("conf/secrets/token".into())
            ),
        ])
    );
    assert_eq!(codex.warm_pool, 2);
    assert_eq!(codex.session_idle_timeout, Duration::from_secs(90 * 60));
    assert_eq!(codex.max_session_duration, Duration::from_secs(8 * 3600));
    assert_eq!(codex.pull_policy, PullPolicy::Never);
    assert_eq!(
        codex.grants,
        Grants {
            http: vec!["api.openai.com".into()],
            env: vec!["RUST_LOG".into()]
        }
    );
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../../../aac.example.toml");
    let config = HostConfig::parse(text, Path::new("aac.example.toml")).unwrap();
    assert_eq!(
        config.runtimes.keys().collect::<Vec<_>>(),
        ["codex", "shell"]
    );
    let codex = &config.runtimes["codex"];
    assert_eq!(codex.sandbox.memory_bytes, Some(4 << 30));
    assert_eq!(codex.sandbox.network, NetworkMode::Bridge);
    assert_eq!(codex.warm_pool, 2);
    assert_eq!(codex.line, line_of(text, "[runtimes.codex]"));
    let shell = config.select("shell").unwrap();
    assert_eq!(shell.image, "aac/busybox:latest");
    assert_eq!(
        shell.profile.plugin,
        PathBuf::from("target/plugins/shell.wasm")
    );
    assert_eq!(shell.profile.pull_policy, PullPolicy::Never);
}

#[test]
fn documented_example_parses() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let config = HostConfig::parse(text, Path::new("aac.toml")).unwrap();
    assert_eq!(
        config.select("codex@0.168").unwrap().image,
        "aac/codex:0.168.2"
    );
}

#[test]
fn defaults() {
    let config = parse(MINIMAL).unwrap();
    let shell = &config.runtimes["shell"];
    assert_eq!(shell.plugin, PathBuf::from("conf/shell.wasm"));
    assert_eq!(shell.plugin_sha256, None);
    assert_eq!(shell.sandbox, SandboxSettings::default());
    assert_eq!(shell.sandbox.network, NetworkMode::None);
    assert_eq!(shell.sandbox.user, None);
    assert!(shell.env.is_empty());
    assert!(shell.secrets.is_empty());
    assert_eq!(shell.warm_pool, 0);
    assert_eq!(shell.session_idle_timeout, Duration::from_secs(15 * 60));
    assert_eq!(shell.max_session_duration, Duration::from_secs(8 * 3600));
    assert_eq!(shell.pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(shell.grants, Grants::default());
    assert!(shell.grants.http.is_empty() && shell.grants.env.is_empty());
}

#[test]
fn absolute_plugin_path_is_kept() {
    let text = MINIMAL.replace("\"shell.wasm\"", "\"/opt/aac/shell.wasm\"");
    let config = parse(&text).unwrap();
    assert_eq!(
        config.runtimes["shell"].plugin,
        PathBuf::from("/opt/aac/shell.wasm")
    );
}

#[test]
fn sizes_in_every_unit() {
    for (written, bytes) in [
        ("\"512MiB\"", 512 << 20),
        ("\"8192KiB\"", 8 << 20),
        ("\"2GB\"", 2_000_000_000),
        ("\"500MB\"", 500_000_000),
        ("\"10000KB\"", 10_000_000),
        ("67108864", 64 << 20),
    ] {
        let config = parse(&minimal_with(&format!(
            "sandbox = {{ memory = {written} }}"
        )))
        .unwrap();
        assert_eq!(
            config.runtimes["shell"].sandbox.memory_bytes,
            Some(bytes),
            "{written}"
        );
    }
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = minimal_with("sandbox = { cpus = 1, memroy = \"1GiB\" }");
    assert_error(
        &text,
        "memroy",
        "runtimes.shell.sandbox.memroy",
        "unknown field `memroy`",
    );
    let text = minimal_with("warm_pools = 2");
    assert_error(
        &text,
        "warm_pools",
        "runtimes.shell.warm_pools",
        "unknown field `warm_pools`",
    );
    let text = format!("{MINIMAL}\n[manager]\nurl = \"http://x\"\n");
    assert_error(&text, "[manager]", "manager", "unknown field `manager`");
    let text = MINIMAL.replace("versions.\"1\".image", "versions.1.imag");
    assert_error(
        &text,
        "imag",
        "runtimes.shell.versions.1.imag",
        "unknown field `imag`",
    );
}

#[test]
fn bad_size_is_refused() {
    let text = minimal_with("sandbox = { memory = \"4 gigs\" }");
    assert_error(
        &text,
        "4 gigs",
        "runtimes.shell.sandbox.memory",
        "invalid size \"4 gigs\" (expected e.g. 512MiB or 4GiB)",
    );
    let text = minimal_with("sandbox = { memory = -1 }");
    assert_error(
        &text,
        "memory",
        "runtimes.shell.sandbox.memory",
        "invalid size -1",
    );
    let text = minimal_with("sandbox = { memory = \"1MiB\" }");
    assert_error(
        &text,
        "memory",
        "runtimes.shell.sandbox.memory",
        "below 6MiB",
    );
}

#[test]
fn bad_duration_is_refused() {
    let text = minimal_with("session_idle_timeout = \"15 minutes\"");
    assert_error(
        &text,
        "15 minutes",
        "runtimes.shell.session_idle_timeout",
        "invalid duration \"15 minutes\"",
    );
    let text = minimal_with("max_session_duration = 3600");
    assert_error(
        &text,
        "3600",
        "runtimes.shell.max_session_duration",
        "needs a unit",
    );
    let text = minimal_with("max_session_duration = \"0s\"");
    assert_error(
        &text,
        "0s",
        "runtimes.shell.max_session_duration",
        "longer than 0s",
    );
}

#[test]
fn bad_network_is_refused() {
    let text = minimal_with("sandbox = { network = \"host\" }");
    assert_error(
        &text,
        "host",
        "runtimes.shell.sandbox.network",
        "unknown variant `host`",
    );
    let (shown, _) = error(&text);
    assert!(shown.contains("`none`, `bridge`, `per-run`"), "{shown}");
    let text = minimal_with("sandbox = { network = \"per-run\" }");
    assert_eq!(
        parse(&text).unwrap().runtimes["shell"].sandbox.network,
        NetworkMode::PerRun
    );
}

#[test]
fn bad_pull_policy_is_refused() {
    let text = minimal_with("pull_policy = \"sometimes\"");
    assert_error(
        &text,
        "sometimes",
        "runtimes.shell.pull_policy",
        "`never`, `if-not-present`, `always`",
    );
    let text = minimal_with("pull_policy = \"always\"");
    assert_eq!(
        parse(&text).unwrap().runtimes["shell"].pull_policy,
        PullPolicy::Always
    );
}

#[test]
fn root_user_is_refused() {
    for user in ["0", "root", "0:0", "root:root", "0:1000", "000:1000"] {
        let text = minimal_with(&format!("sandbox = {{ user = \"{user}\" }}"));
        assert_error(
            &text,
            "user",
            "runtimes.shell.sandbox.user",
            "sandboxes never run as root",
        );
    }
    for user in [
        "1000:1000",
        "1000",
        "agent",
        "agent:agent",
        "1000:0",
        "_svc",
    ] {
        let text = minimal_with(&format!("sandbox = {{ user = \"{user}\" }}"));
        assert_eq!(
            parse(&text).unwrap().runtimes["shell"]
                .sandbox
                .user
                .as_deref(),
            Some(user)
        );
    }
    for user in ["", ":", "1000:", "a b", "1000:1000:1000", "99999999999"] {
        let text = minimal_with(&format!("sandbox = {{ user = \"{user}\" }}"));
        assert_error(&text, "user", "runtimes.shell.sandbox.user", "invalid user");
    }
}

#[test]
fn other_sandbox_limits_are_checked() {
    let text = minimal_with("sandbox = { cpus = 0 }");
    assert_error(
        &text,
        "cpus",
        "runtimes.shell.sandbox.cpus",
        "greater than 0",
    );
    let text = minimal_with("sandbox = { cpus = 1 }");
    assert_eq!(
        parse(&text).unwrap().runtimes["shell"].sandbox.cpus,
        Some(1.0)
    );
    let text = minimal_with("sandbox = { pids = -1 }");
    assert_error(
        &text,
        "pids",
        "runtimes.shell.sandbox.pids",
        "greater than 0",
    );
}

#[test]
fn default_version_must_be_a_version() {
    let text = MINIMAL.replace("default_version = \"1\"", "default_version = \"2\"");
    assert_error(
        &text,
        "default_version",
        "runtimes.shell.default_version",
        "\"2\" is not among versions (known: 1)",
    );
}

#[test]
fn a_profile_needs_versions() {
    let text = "\n[runtimes.shell]\nplugin = \"shell.wasm\"\ndefault_version = \"1\"\n";
    assert_error(
        text,
        "[runtimes.shell]",
        "runtimes.shell.versions",
        "no versions defined",
    );
    let text =
        "\n[runtimes.shell]\nplugin = \"shell.wasm\"\ndefault_version = \"1\"\nversions = {}\n";
    assert_error(
        text,
        "versions",
        "runtimes.shell.versions",
        "no versions defined",
    );
}

#[test]
fn missing_required_key_is_refused() {
    let text = MINIMAL.replace("plugin = \"shell.wasm\"\n", "");
    assert_error(
        &text,
        "[runtimes.shell]",
        "runtimes.shell",
        "missing field `plugin`",
    );
    let (shown, _) = error("");
    assert_eq!(
        shown,
        "conf/aac.toml: runtimes: no runtimes defined (add a [runtimes.NAME] table)"
    );
}

#[test]
fn bad_sha256_is_refused() {
    let text = minimal_with("plugin_sha256 = \"abc123\"");
    assert_error(
        &text,
        "plugin_sha256",
        "runtimes.shell.plugin_sha256",
        "invalid sha256 \"abc123\" (expected 64 hex digits)",
    );
    let text = minimal_with(&format!("plugin_sha256 = \"{}\"", "g".repeat(64)));
    assert_error(
        &text,
        "plugin_sha256",
        "runtimes.shell.plugin_sha256",
        "expected 64 hex digits",
    );
}

#[test]
fn syntax_error_has_a_line() {
    let text = minimal_with("warm_pool = = 2");
    let (shown, parts) = error(&text);
    assert_eq!(parts.line, Some(line_of(&text, "= = 2")), "{shown}");
    assert!(
        shown.starts_with(&format!("conf/aac.toml:{}: ", line_of(&text, "= = 2"))),
        "{shown}"
    );
}

#[test]
fn duplicate_key_has_line_and_key() {
    let text = minimal_with("plugin = \"other.wasm\"");
    let (shown, parts) = error(&text);
    assert_eq!(parts.line, Some(line_of(&text, "other.wasm")), "{shown}");
    assert!(shown.ends_with("duplicate key `plugin`"), "{shown}");
}

#[test]
fn wrong_types_are_refused() {
    let text = minimal_with("warm_pool = -1");
    assert_error(&text, "warm_pool", "runtimes.shell.warm_pool", "-1");
    let text = minimal_with("env = { RUST_LOG = 1 }");
    assert_error(
        &text,
        "RUST_LOG",
        "runtimes.shell.env.RUST_LOG",
        "invalid type",
    );
}

#[test]
fn names_are_checked() {
    let text = MINIMAL.replace("[runtimes.shell]", "[runtimes.\"she ll\"]");
    assert_error(
        &text,
        "she ll",
        "runtimes.\"she ll\"",
        "invalid runtime name",
    );
    let text = MINIMAL.replace("versions.\"1\".image", "versions.\"1@2\".image");
    assert_error(
        &text,
        "1@2",
        "runtimes.shell.versions.\"1@2\"",
        "invalid version",
    );
    let text = MINIMAL.replace("\"aac/busybox:latest\"", "\"\"");
    assert_error(
        &text,
        "image",
        "runtimes.shell.versions.1.image",
        "invalid image",
    );
    let text = minimal_with("env = { \"A=B\" = \"x\" }");
    assert_error(
        &text,
        "A=B",
        "runtimes.shell.env.\"A=B\"",
        "invalid environment variable name",
    );
}

#[test]
fn secrets_are_checked() {
    let text = minimal_with("secrets = { KEY = { env = \"K\", file = \"k\" } }");
    assert_error(
        &text,
        "secrets",
        "runtimes.shell.secrets.KEY",
        "exactly one of `env` or `file`",
    );
    let text = minimal_with("secrets = { KEY = {} }");
    assert_error(
        &text,
        "secrets",
        "runtimes.shell.secrets.KEY",
        "exactly one of `env` or `file`",
    );
    let text = minimal_with("secrets = { KEY = { vault = \"k\" } }");
    assert_error(
        &text,
        "secrets",
        "runtimes.shell.secrets.KEY",
        "unknown field `vault`",
    );
    // A value written where its source belongs is refused without being repeated.
    let text = minimal_with("secrets = { KEY = \"sk-live-123\" }");
    assert_error(
        &text,
        "secrets",
        "runtimes.shell.secrets.KEY",
        "never goes in the config file",
    );
    assert!(!error(&text).0.contains("sk-live"));
    let text = minimal_with("secrets = { KEY = { env = \"sk-live-123\" } }");
    assert_error(
        &text,
        "secrets",
        "runtimes.shell.secrets.KEY",
        "not the secret itself",
    );
    assert!(!error(&text).0.contains("sk-live"));
    let text = minimal_with("env = { KEY = \"x\" }\nsecrets = { KEY = { env = \"KEY\" } }");
    assert_error(
        &text,
        "secrets",
        "runtimes.shell.secrets.KEY",
        "also set in env",
    );
    let text = minimal_with(
        "secrets = { KEY = { env = \"HOST_KEY\" } }\ngrants = { env = [\"HOST_KEY\"] }",
    );
    assert_error(
        &text,
        "grants",
        "runtimes.shell.grants.env",
        "never into the plugin",
    );
}

/// A secret of one runtime cannot be granted to another runtime's plugin (nor the materializer),
/// and the host's own variables (the runner's bearer token…) to none.
#[test]
fn env_grants_of_another_runtimes_secret_or_the_hosts_credentials_are_refused() {
    let other = r#"
[runtimes.other]
plugin = "other.wasm"
default_version = "1"
versions."1".image = "aac/busybox:latest"
secrets = { OPENAI_API_KEY = { env = "HOST_OPENAI_KEY" } }
"#;
    for granted in ["OPENAI_API_KEY", "HOST_OPENAI_KEY"] {
        let text = format!("{}grants = {{ env = [\"{granted}\"] }}\n{other}", MINIMAL);
        assert_error(
            &text,
            "grants",
            "runtimes.shell.grants.env",
            "runtime `other`'s secret OPENAI_API_KEY: secrets go into the sandbox, never into the plugin",
        );
        let text = format!(
            "{MINIMAL}{other}[bundles]\nplugin = \"b.wasm\"\ngrants = {{ env = [\"{granted}\"] }}\n"
        );
        assert_error(
            &text,
            "grants",
            "bundles.grants.env",
            "runtime `other`'s secret",
        );
    }
    let text = minimal_with("grants = { env = [\"AAC_MANAGER_TOKEN\"] }");
    assert_error(
        &text,
        "grants",
        "runtimes.shell.grants.env",
        "AAC_MANAGER_TOKEN is one of the host's own variables",
    );
    // Other variables are still granted.
    let text = minimal_with("grants = { env = [\"LANG\"] }");
    assert_eq!(parse(&text).unwrap().runtimes["shell"].grants.env, ["LANG"]);
}

#[test]
fn select_by_name_and_version() {
    let config = parse(FULL).unwrap();
    let default = config.select("codex").unwrap();
    assert_eq!(default.profile.name, "codex");
    assert_eq!(default.version, "0.169");
    assert_eq!(default.image, "aac/codex:0.169.0");
    let pinned = config.select("codex@0.169").unwrap();
    assert_eq!(
        (pinned.version.as_str(), pinned.image.as_str()),
        ("0.169", "aac/codex:0.169.0")
    );
    let older = config.select("codex@0.168").unwrap();
    assert_eq!(
        (older.version.as_str(), older.image.as_str()),
        ("0.168", "aac/codex:0.168.2")
    );
}

#[test]
fn select_unknown_runtime_or_version_lists_the_known_ones() {
    let text = format!("{FULL}{}", MINIMAL.trim_start());
    let config = parse(&text).unwrap();

    let err = config.select("claude").unwrap_err().to_string();
    assert_eq!(
        err,
        "conf/aac.toml: runtimes.claude: no runtime \"claude\" (known: codex, shell)"
    );

    let err = config.select("codex@0.170").unwrap_err();
    let parts = err.downcast_ref::<ConfigError>().unwrap();
    assert_eq!(parts.line, Some(2));
    assert_eq!(
        err.to_string(),
        "conf/aac.toml:2: runtimes.codex.versions: no version \"0.170\" of runtime codex (known: 0.168, 0.169)"
    );

    for bad in ["", "@0.169", "codex@"] {
        let err = config.select(bad).unwrap_err().to_string();
        assert!(
            err.contains("expected NAME or NAME@VERSION"),
            "{bad}: {err}"
        );
    }
}

fn profile_with_secrets(dir: &Path, secrets: &str) -> RuntimeProfile {
    let text = minimal_with(&format!("secrets = {{ {secrets} }}"));
    let mut config = HostConfig::parse(&text, &dir.join("aac.toml")).unwrap();
    config.runtimes.remove("shell").unwrap()
}

#[test]
fn secrets_from_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/token"), "file-secret-value\n").unwrap();
    let profile = profile_with_secrets(
        dir.path(),
        "API_KEY = { env = \"HOST_API_KEY\" }, TOKEN = { file = \"secrets/token\" }",
    );
    let env = |var: &str| (var == "HOST_API_KEY").then(|| OsString::from("env-secret-value"));
    let resolved = profile.resolve_secrets_with(env).unwrap();
    assert_eq!(
        resolved,
        [
            ("API_KEY".to_string(), "env-secret-value".to_string()),
            ("TOKEN".to_string(), "file-secret-value".to_string()),
        ]
    );
}

#[test]
fn secrets_from_the_process_environment() {
    // PATH is set wherever tests run; its value is only compared, never printed.
    let dir = tempfile::tempdir().unwrap();
    let profile = profile_with_secrets(dir.path(), "P = { env = \"PATH\" }");
    let resolved = profile.resolve_secrets().unwrap();
    assert_eq!(resolved.len(), 1);
    assert!(std::env::var_os("PATH").is_some_and(|path| path == resolved[0].1.as_str()));
}

#[test]
fn missing_secrets_name_the_key_not_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let value = "sk-do-not-print";

    let profile = profile_with_secrets(dir.path(), "API_KEY = { env = \"HOST_API_KEY\" }");
    let err = profile
        .resolve_secrets_with(|_| None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "secret API_KEY of runtime shell: host environment variable HOST_API_KEY is not set"
    );
    let err = profile
        .resolve_secrets_with(|_| Some(OsString::new()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("API_KEY") && err.contains("is empty"), "{err}");

    let profile = profile_with_secrets(dir.path(), "TOKEN = { file = \"missing/token\" }");
    let err = profile
        .resolve_secrets_with(|_| Some(value.into()))
        .unwrap_err()
        .to_string();
    let path = dir.path().join("missing/token");
    assert!(
        err.starts_with("secret TOKEN of runtime shell: file "),
        "{err}"
    );
    assert!(
        err.contains(&path.display().to_string()) && err.contains("could not read it"),
        "{err}"
    );

    std::fs::write(dir.path().join("bad"), b"uniquesecretvalue\xff\n").unwrap();
    let profile = profile_with_secrets(dir.path(), "BAD = { file = \"bad\" }");
    let err = profile.resolve_secrets().unwrap_err().to_string();
    assert!(
        err.contains("BAD")
            && err.contains("not valid UTF-8")
            && !err.contains("uniquesecretvalue"),
        "{err}"
    );

    // Nothing a profile prints carries a resolved value.
    let profile = profile_with_secrets(dir.path(), "API_KEY = { env = \"HOST_API_KEY\" }");
    profile
        .resolve_secrets_with(|_| Some(value.into()))
        .unwrap();
    assert!(!format!("{profile:?}").contains(value));
}

#[test]
fn plugin_pin_is_verified() {
    // sha256("test")
    let text = minimal_with(
        "plugin_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"",
    );
    let config = parse(&text).unwrap();
    let profile = &config.runtimes["shell"];
    profile.verify_plugin(b"test").unwrap();
    let err = profile.verify_plugin(b"tampered").unwrap_err().to_string();
    assert!(err.contains("plugin_sha256 pins 9f86d081"), "{err}");
    parse(MINIMAL).unwrap().runtimes["shell"]
        .verify_plugin(b"anything")
        .unwrap();
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("aac.toml");
    let err = HostConfig::load(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let text = minimal_with("warm_pool = \"two\"");
    std::fs::write(&missing, &text).unwrap();
    let err = HostConfig::load(&missing).unwrap_err().to_string();
    let line = line_of(&text, "warm_pool");
    assert!(
        err.starts_with(&format!(
            "{}:{line}: runtimes.shell.warm_pool: ",
            missing.display()
        )),
        "{err}"
    );

    std::fs::write(&missing, MINIMAL).unwrap();
    let config = HostConfig::load(&missing).unwrap();
    assert_eq!(
        config.runtimes["shell"].plugin,
        dir.path().join("shell.wasm")
    );
}
