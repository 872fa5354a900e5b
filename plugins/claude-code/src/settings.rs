//! The plugin's settings (run config merged with each command's payload), and the `claude -p`
//! command line and environment they give. Pure: no WIT, unit-tested natively.

use aac_sdk::config::{env, number, object, string, strings};

/// The default idle watchdog: ten silent minutes means the CLI hangs.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 600_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub binary: String,
    pub model: Option<String>,
    /// `ANTHROPIC_BASE_URL` (no `/v1`).
    pub base_url: Option<String>,
    /// `CLAUDE_CODE_MAX_RETRIES`; 0 by default so a dead provider fails the turn at once.
    pub max_retries: u64,
    pub max_turns: Option<u64>,
    pub idle_timeout_ms: u64,
    pub timeout_ms: Option<u64>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Settings {
    /// Reads the run's config, with the command's payload overriding it key by key.
    pub fn from_json(config_json: &str, payload_json: &str) -> Result<Self, String> {
        let mut config = object(config_json, "run config")?;
        config.extend(object(payload_json, "command payload")?);
        Ok(Self {
            binary: string(&config, "binary")?.unwrap_or_else(|| "claude".into()),
            model: string(&config, "model")?,
            base_url: string(&config, "base_url")?,
            max_retries: number(&config, "max_retries")?.unwrap_or(0),
            max_turns: number(&config, "max_turns")?,
            idle_timeout_ms: number(&config, "idle_timeout_ms")?.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
            timeout_ms: number(&config, "timeout_ms")?,
            extra_args: strings(&config, "extra_args")?,
            env: env(&config)?,
        })
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
        if let Some(base_url) = &self.base_url {
            env.push(("ANTHROPIC_BASE_URL".into(), base_url.clone()));
        }
        env.extend(self.env.iter().cloned());
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
    fn bad_config_is_named() {
        let err = Settings::from_json(r#"{"max_retries":-1}"#, "{}").unwrap_err();
        assert!(err.contains("max_retries"), "{err}");
        let err = Settings::from_json("{}", "nope").unwrap_err();
        assert!(err.contains("command payload"), "{err}");
    }
}
