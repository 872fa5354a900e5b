//! The plugin's settings (run config merged with each command's payload), and the `claude -p`
//! command line and environment they give. Pure: no WIT, unit-tested natively.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The default idle watchdog: ten silent minutes means the CLI hangs.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 600_000;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Settings {
    #[serde(default = "default_binary")]
    pub binary: String,
    pub model: Option<String>,
    /// `ANTHROPIC_BASE_URL` (no `/v1`).
    pub base_url: Option<String>,
    /// `CLAUDE_CODE_MAX_RETRIES`; 0 by default so a dead provider fails the turn at once.
    #[serde(default)]
    pub max_retries: u64,
    pub max_turns: Option<u64>,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub extra_args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Set by the host when the profile binds credentials: each bound variable's gateway URL.
    /// With `ANTHROPIC_API_KEY` (or `ANTHROPIC_AUTH_TOKEN`) bound, the CLI's base URL is its
    /// gateway, over `base_url` (the host adds the real key).
    #[serde(default)]
    pub credential_gateways: BTreeMap<String, String>,
}

/// The variables Claude Code reads its credential from.
const KEY_VARS: [&str; 2] = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"];

fn default_binary() -> String {
    "claude".into()
}

fn default_idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}

impl Settings {
    /// Reads the run's config, with the command's payload overriding it key by key.
    pub fn from_json(config_json: &str, payload_json: &str) -> Result<Self, String> {
        aac_sdk::config::parse(config_json, payload_json)
    }

    /// The command line of one turn: a new session, or `--resume <session_id>`.
    pub fn argv(&self, prompt: &str, resume: Option<&str>) -> Vec<String> {
        let mut argv: Vec<String> = [
            self.binary.as_str(),
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            // The container is the sandbox: no permission prompts inside it.
            "--dangerously-skip-permissions",
        ]
        .map(String::from)
        .to_vec();
        if let Some(model) = &self.model {
            argv.extend(["--model".into(), model.clone()]);
        }
        if let Some(max_turns) = self.max_turns {
            argv.extend(["--max-turns".into(), max_turns.to_string()]);
        }
        if let Some(session_id) = resume {
            argv.extend(["--resume".into(), session_id.into()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        // `--` so a prompt starting with `-` is not read as a flag.
        argv.extend(["--".into(), prompt.into()]);
        argv
    }

    /// The turn's environment: what keeps the CLI quiet and fail-fast, then the run's own `env`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            // Otherwise it contacts the vendor at start (telemetry, update checks).
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            (
                "CLAUDE_CODE_MAX_RETRIES".into(),
                self.max_retries.to_string(),
            ),
        ];
        let gateway = KEY_VARS
            .iter()
            .find_map(|var| self.credential_gateways.get(*var));
        if let Some(base_url) = gateway.or(self.base_url.as_ref()) {
            env.push(("ANTHROPIC_BASE_URL".into(), base_url.clone()));
        }
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_turn_and_resume() {
        let settings = Settings::from_json(
            r#"{"model":"m1","base_url":"http://172.17.0.1:9","idle_timeout_ms":700,"env":{"A":"b"}}"#,
            r#"{"max_turns":3}"#,
        )
        .unwrap();
        assert_eq!(
            settings.argv("-hi", None).join(" "),
            "claude -p --output-format stream-json --verbose --dangerously-skip-permissions \
             --model m1 --max-turns 3 -- -hi"
        );
        let resumed = settings.argv("next", Some("s-1"));
        assert_eq!(
            &resumed[resumed.len() - 4..],
            ["--resume", "s-1", "--", "next"]
        );
        let env = settings.env();
        assert!(env.contains(&("ANTHROPIC_BASE_URL".into(), "http://172.17.0.1:9".into())));
        assert!(env.contains(&("CLAUDE_CODE_MAX_RETRIES".into(), "0".into())));
        assert!(env.contains(&(
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".into()
        )));
        assert_eq!(env.last(), Some(&("A".into(), "b".into())));
        assert_eq!(settings.idle_timeout_ms, 700);
    }

    #[test]
    fn a_bound_key_points_the_cli_at_the_host_gateway() {
        let settings = Settings::from_json(
            r#"{"base_url":"http://elsewhere","credential_gateways":{"ANTHROPIC_API_KEY":"http://172.30.0.1:7/cred/ANTHROPIC_API_KEY"}}"#,
            "{}",
        )
        .unwrap();
        let env = settings.env();
        assert!(env.contains(&(
            "ANTHROPIC_BASE_URL".into(),
            "http://172.30.0.1:7/cred/ANTHROPIC_API_KEY".into()
        )));
        assert!(!env.iter().any(|(_, v)| v.contains("elsewhere")), "{env:?}");
    }

    #[test]
    fn bad_config_is_named() {
        let err = Settings::from_json(r#"{"max_retries":-1}"#, "{}").unwrap_err();
        assert!(err.contains("max_retries"), "{err}");
        let err = Settings::from_json("{}", "nope").unwrap_err();
        assert!(err.contains("command payload"), "{err}");
    }
}
