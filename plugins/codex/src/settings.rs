//! The plugin's settings (run config merged with each command's payload) and the `codex exec`
//! command line they give. Pure: no WIT, unit-tested natively.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The default idle watchdog: Codex prints at least one line per item, so ten silent minutes
/// means it hangs.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 600_000;

/// `-c` overrides every turn gets, for a CLI inside a sandbox: no update check, no analytics, no
/// plugin marketplace fetch at start, no endless reconnects. A run's `config` can override them.
const BASE_OVERRIDES: &[(&str, &str)] = &[
    ("check_for_update_on_startup", "false"),
    ("analytics.enabled", "false"),
    ("features.plugins", "false"),
    ("features.unbounded_connection_retries", "false"),
];

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Settings {
    #[serde(default = "default_binary")]
    pub binary: String,
    pub model: Option<String>,
    pub provider: Option<Provider>,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    pub timeout_ms: Option<u64>,
    /// `-c key=value` overrides (the `config` key), value already TOML.
    #[serde(default, rename = "config", deserialize_with = "overrides")]
    pub overrides: Vec<(String, String)>,
    #[serde(default)]
    pub extra_args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Set by the host when the profile binds credentials: each bound variable's gateway URL. A
    /// provider whose `env_key` is bound uses it as its base URL (the host adds the real key).
    #[serde(default)]
    pub credential_gateways: BTreeMap<String, String>,
}

/// The variable Codex's OpenAI provider reads its key from.
pub const OPENAI_KEY: &str = "OPENAI_API_KEY";

/// A custom model provider, written as `model_providers.<id>.*` overrides.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Provider {
    #[serde(default = "default_provider")]
    pub id: String,
    #[serde(default = "default_provider")]
    pub name: String,
    /// Optional when the host serves a credential gateway for `env_key`.
    pub base_url: Option<String>,
    #[serde(default = "default_wire_api")]
    pub wire_api: String,
    pub env_key: Option<String>,
    pub request_max_retries: Option<u64>,
    pub stream_max_retries: Option<u64>,
}

fn default_binary() -> String {
    "codex".into()
}

fn default_idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}

fn default_provider() -> String {
    "aac".into()
}

fn default_wire_api() -> String {
    "responses".into()
}

/// `config`: an object of Codex settings, each value turned into TOML.
fn overrides<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    Map::<String, Value>::deserialize(deserializer)?
        .iter()
        .map(|(key, value)| Ok((key.clone(), toml_value(value).map_err(D::Error::custom)?)))
        .collect()
}

impl Settings {
    /// Reads the run's config, with the command's payload overriding it key by key.
    pub fn from_json(config_json: &str, payload_json: &str) -> Result<Self, String> {
        let settings: Self = aac_sdk::config::parse(config_json, payload_json)?;
        if let Some(provider) = &settings.provider
            && provider.base_url.is_none()
            && settings.gateway_of(provider).is_none()
        {
            return Err(
                "config `provider.base_url` is required (unless the host binds the provider's                  env_key as a credential)"
                    .into(),
            );
        }
        Ok(settings)
    }

    /// The credential gateway of `provider`'s key, if the host serves one.
    fn gateway_of(&self, provider: &Provider) -> Option<&String> {
        self.credential_gateways
            .get(provider.env_key.as_deref().unwrap_or(OPENAI_KEY))
    }

    /// The provider of the turn: the configured one (its base URL the gateway's when its key is
    /// bound), or, with no provider configured and `OPENAI_API_KEY` bound, the OpenAI Responses API
    /// through the gateway.
    fn effective_provider(&self) -> Option<Provider> {
        match &self.provider {
            Some(provider) => {
                let mut provider = provider.clone();
                if let Some(gateway) = self.gateway_of(&provider) {
                    provider.base_url = Some(gateway.clone());
                }
                Some(provider)
            }
            None => self
                .credential_gateways
                .get(OPENAI_KEY)
                .map(|gateway| Provider {
                    id: default_provider(),
                    name: default_provider(),
                    base_url: Some(gateway.clone()),
                    wire_api: default_wire_api(),
                    env_key: Some(OPENAI_KEY.into()),
                    request_max_retries: None,
                    stream_max_retries: None,
                }),
        }
    }

    /// The command line of one turn: a new thread, or `resume <thread_id>`.
    pub fn argv(&self, prompt: &str, resume: Option<&str>) -> Vec<String> {
        let mut argv = vec![self.binary.clone(), "exec".into()];
        if resume.is_some() {
            argv.push("resume".into());
        }
        argv.extend(
            [
                "--json",
                "--skip-git-repo-check",
                // The container is the sandbox; Codex's own (bwrap/landlock) fails inside one.
                "--dangerously-bypass-approvals-and-sandbox",
            ]
            .map(String::from),
        );
        for (key, value) in self.all_overrides() {
            argv.push("-c".into());
            argv.push(format!("{key}={value}"));
        }
        argv.extend(self.extra_args.iter().cloned());
        // `--` so a prompt starting with `-` is not read as a flag.
        argv.push("--".into());
        argv.extend(resume.map(String::from));
        argv.push(prompt.into());
        argv
    }

    fn all_overrides(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = BASE_OVERRIDES
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let quoted = |text: &str| Value::String(text.into()).to_string();
        if let Some(model) = &self.model {
            all.push(("model".into(), quoted(model)));
        }
        if let Some(p) = &self.effective_provider() {
            let key = |field: &str| format!("model_providers.{}.{field}", p.id);
            all.push(("model_provider".into(), quoted(&p.id)));
            all.push((key("name"), quoted(&p.name)));
            if let Some(base_url) = &p.base_url {
                all.push((key("base_url"), quoted(base_url)));
            }
            all.push((key("wire_api"), quoted(&p.wire_api)));
            if let Some(env_key) = &p.env_key {
                all.push((key("env_key"), quoted(env_key)));
            }
            if let Some(n) = p.request_max_retries {
                all.push((key("request_max_retries"), n.to_string()));
            }
            if let Some(n) = p.stream_max_retries {
                all.push((key("stream_max_retries"), n.to_string()));
            }
        }
        // Later `-c` flags win, so the run's own overrides go last.
        all.extend(self.overrides.iter().cloned());
        all
    }
}

/// A JSON value as a TOML value for `-c key=value`. JSON strings, numbers and booleans are
/// already valid TOML; objects become inline tables.
fn toml_value(value: &Value) -> Result<String, String> {
    Ok(match value {
        Value::Null => return Err("config values cannot be null".into()),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(toml_value)
                .collect::<Result<Vec<_>, _>>()?
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| Ok(format!("{} = {}", Value::String(k.clone()), toml_value(v)?)))
                .collect::<Result<Vec<_>, String>>()?
                .join(", ")
        ),
        scalar => scalar.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_and_model_become_overrides() {
        let settings = Settings::from_json(
            r#"{"model":"m1","provider":{"base_url":"http://172.17.0.1:9/v1","env_key":"KEY","stream_max_retries":0},
                "config":{"model_reasoning_effort":"low","tools":{"web_search":false}},"extra_args":["--oss"]}"#,
            r#"{"model":"m2"}"#,
        )
        .unwrap();
        let argv = settings.argv("-do it", None);
        let joined = argv.join(" ");
        assert!(joined.starts_with(
            "codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox"
        ));
        assert!(
            joined.contains(r#"-c model="m2""#),
            "payload overrides: {joined}"
        );
        assert!(joined.contains(r#"-c model_provider="aac""#));
        assert!(joined.contains(r#"-c model_providers.aac.base_url="http://172.17.0.1:9/v1""#));
        assert!(joined.contains(r#"-c model_providers.aac.wire_api="responses""#));
        assert!(joined.contains(r#"-c model_providers.aac.env_key="KEY""#));
        assert!(joined.contains("-c model_providers.aac.stream_max_retries=0"));
        assert!(joined.contains(r#"-c tools={"web_search" = false}"#));
        assert!(joined.ends_with("--oss -- -do it"), "{joined}");
        assert_eq!(settings.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
    }

    #[test]
    fn a_bound_key_points_the_provider_at_the_host_gateway() {
        let gateways = r#""credential_gateways":{"MOCK_KEY":"http://172.30.0.1:7/cred/MOCK_KEY","OPENAI_API_KEY":"http://172.30.0.1:7/cred/OPENAI_API_KEY"}"#;
        // A configured provider whose key is bound: the gateway wins over its base_url.
        let settings = Settings::from_json(
            &format!(r#"{{"provider":{{"base_url":"http://elsewhere/v1","env_key":"MOCK_KEY"}},{gateways}}}"#),
            "{}",
        )
        .unwrap();
        let joined = settings.argv("hi", None).join(" ");
        assert!(
            joined
                .contains(r#"-c model_providers.aac.base_url="http://172.30.0.1:7/cred/MOCK_KEY""#),
            "{joined}"
        );
        assert!(!joined.contains("elsewhere"), "{joined}");
        // No provider configured, OPENAI_API_KEY bound: the Responses API through the gateway.
        let settings = Settings::from_json(&format!("{{{gateways}}}"), "{}").unwrap();
        let joined = settings.argv("hi", None).join(" ");
        assert!(joined.contains(r#"-c model_provider="aac""#), "{joined}");
        assert!(
            joined.contains(
                r#"-c model_providers.aac.base_url="http://172.30.0.1:7/cred/OPENAI_API_KEY""#
            ),
            "{joined}"
        );
        assert!(joined.contains(r#"-c model_providers.aac.env_key="OPENAI_API_KEY""#));
        // A provider without base_url whose key is bound needs none.
        assert!(
            Settings::from_json(
                &format!(r#"{{"provider":{{"env_key":"MOCK_KEY"}},{gateways}}}"#),
                "{}"
            )
            .is_ok()
        );
        // Nothing bound: no provider override at all.
        let plain = Settings::from_json("{}", "{}")
            .unwrap()
            .argv("hi", None)
            .join(" ");
        assert!(!plain.contains("model_provider"), "{plain}");
    }

    #[test]
    fn resume_names_the_thread() {
        let settings = Settings::from_json("{}", "{}").unwrap();
        let argv = settings.argv("next", Some("t-1"));
        assert_eq!(&argv[..3], ["codex", "exec", "resume"]);
        assert_eq!(&argv[argv.len() - 3..], ["--", "t-1", "next"]);
    }

    #[test]
    fn bad_config_is_named() {
        let err =
            Settings::from_json(r#"{"provider":{"wire_api":"responses"}}"#, "{}").unwrap_err();
        assert!(err.contains("provider.base_url"), "{err}");
        let err = Settings::from_json(r#"{"idle_timeout_ms":"soon"}"#, "{}").unwrap_err();
        assert!(err.contains("idle_timeout_ms"), "{err}");
        let err = Settings::from_json("[1]", "{}").unwrap_err();
        assert!(err.contains("run config"), "{err}");
    }
}
