//! `credentials` of a runtime profile: secrets bound to a destination instead of the sandbox's
//! environment. The sandbox gets a placeholder under the name; the egress proxy's gateway adds the
//! real value (in a header) to requests it forwards to the upstream.
//!
//! ```toml
//! [runtimes.codex.credentials.OPENAI_API_KEY]
//! env = "OPENAI_API_KEY"                    # or file = "secrets/openai-key"
//! upstream = "https://api.openai.com/v1"
//! header = "Authorization: Bearer {secret}" # the default
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use serde::Deserialize;
use toml::Spanned;

use super::names::{invalid_env_name, is_env_name};
use super::raw::Checker;
use super::{NetworkMode, SecretSource};
use aac_egress::{Credential, HeaderTemplate, Upstream};

/// The header a binding sends when it names none (the OpenAI API's, and most others').
pub const DEFAULT_HEADER: &str = "Authorization: Bearer {secret}";

/// One `credentials.NAME` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) env: Option<String>,
    file: Option<String>,
    upstream: Spanned<String>,
    header: Option<Spanned<String>>,
    #[serde(default)]
    private: bool,
}

/// A secret bound to a destination: where its value is read on the host, where it may go, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialBinding {
    pub source: SecretSource,
    pub upstream: Upstream,
    pub header: HeaderTemplate,
    /// Whether the upstream may resolve to a loopback, private or link-local address.
    pub private: bool,
}

impl CredentialBinding {
    /// The credential with its value read on the host (errors name the source, never a value).
    pub fn resolve(
        &self,
        name: &str,
        runtime: &str,
        lookup: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Credential> {
        let value = self.source.resolve(name, runtime, lookup)?;
        Credential::new(
            name,
            self.upstream.clone(),
            &self.header,
            &value,
            self.private,
        )
        .map_err(|why| anyhow!("runtime {runtime}: {why}"))
    }
}

impl Checker<'_> {
    /// Validates the `credentials` of runtime `n`, against its `env`, `secrets` and network.
    pub(super) fn credentials(
        &self,
        n: &str,
        raw: BTreeMap<Spanned<String>, Spanned<RawCredential>>,
        env: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, SecretSource>,
        network: NetworkMode,
    ) -> Result<BTreeMap<String, CredentialBinding>> {
        let mut bindings = BTreeMap::new();
        for (key, credential) in raw {
            let k = key.get_ref().as_str();
            let path = ["runtimes", n, "credentials", k];
            if !is_env_name(k) {
                return Err(self.error(key.span(), &path, invalid_env_name(k)));
            }
            if env.contains_key(k) || secrets.contains_key(k) {
                return Err(self.error(
                    key.span(),
                    &path,
                    format!(
                        "{k} is also set in {}: a bound credential never enters the sandbox, so it \
                         cannot be given to it as well",
                        if env.contains_key(k) {
                            "env"
                        } else {
                            "secrets"
                        }
                    ),
                ));
            }
            if network != NetworkMode::Egress {
                return Err(self.error(
                    key.span(),
                    &path,
                    format!(
                        "credentials are added by the egress proxy's gateway: they need \
                         sandbox.network mode = \"egress\", not `{}`",
                        network.as_str()
                    ),
                ));
            }
            let span = credential.span();
            let raw = credential.into_inner();
            let source = match (raw.env, raw.file) {
                (Some(var), None) if is_env_name(&var) => SecretSource::Env(var),
                (Some(_), None) => {
                    return Err(self.error(
                        span,
                        &[&path[..], &["env"]].concat(),
                        "not a valid environment variable name; it names the host variable holding \
                         the secret, not the secret itself",
                    ));
                }
                (None, Some(file)) if !file.is_empty() => {
                    SecretSource::File(self.dir.join(PathBuf::from(file)))
                }
                (None, Some(_)) => {
                    return Err(self.error(
                        span,
                        &[&path[..], &["file"]].concat(),
                        "the path is empty",
                    ));
                }
                _ => {
                    return Err(self.error(
                        span,
                        &path,
                        "a credential takes exactly one of `env` or `file`: where its value is read on the host",
                    ));
                }
            };
            if let Some((other, _)) = secrets.iter().find(|(_, s)| **s == source) {
                return Err(self.error(
                    span,
                    &path,
                    format!(
                        "secret {other} reads the same {}: its value would enter the sandbox anyway",
                        source.describe()
                    ),
                ));
            }
            let upstream = Upstream::parse(raw.upstream.get_ref()).map_err(|why| {
                self.error(
                    raw.upstream.span(),
                    &[&path[..], &["upstream"]].concat(),
                    why,
                )
            })?;
            let header = match &raw.header {
                None => HeaderTemplate::parse(DEFAULT_HEADER).expect("the default header parses"),
                Some(header) => HeaderTemplate::parse(header.get_ref()).map_err(|why| {
                    self.error(header.span(), &[&path[..], &["header"]].concat(), why)
                })?,
            };
            bindings.insert(
                k.to_string(),
                CredentialBinding {
                    source,
                    upstream,
                    header,
                    private: raw.private,
                },
            );
        }
        Ok(bindings)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use crate::config::HostConfig;

    const PROFILE: &str = "[runtimes.codex]\nplugin = \"codex.wasm\"\ndefault_version = \"1\"\n\
        versions.\"1\".image = \"aac/codex:0.169.0\"\n";

    fn parse(rest: &str) -> anyhow::Result<HostConfig> {
        HostConfig::parse(&format!("{PROFILE}{rest}\n"), Path::new("conf/aac.toml"))
    }

    #[test]
    fn a_credential_binds_a_secret_to_an_upstream_and_a_header() {
        let config = parse(
            "sandbox = { network = \"egress\" }\n\
             [runtimes.codex.credentials.OPENAI_API_KEY]\n\
             env = \"HOST_OPENAI_KEY\"\n\
             upstream = \"https://api.openai.com/v1\"\n\
             [runtimes.codex.credentials.ANTHROPIC_API_KEY]\n\
             file = \"keys/anthropic\"\n\
             upstream = \"http://127.0.0.1:8080\"\n\
             header = \"x-api-key: {secret}\"\n\
             private = true",
        )
        .unwrap();
        let profile = &config.runtimes["codex"];
        let openai = &profile.credentials["OPENAI_API_KEY"];
        assert_eq!(openai.upstream.to_string(), "https://api.openai.com/v1");
        assert_eq!(openai.header.name, "Authorization");
        assert!(!openai.private);
        let anthropic = &profile.credentials["ANTHROPIC_API_KEY"];
        assert!(anthropic.private);
        assert_eq!(
            anthropic.source,
            crate::config::SecretSource::File(Path::new("conf/keys/anthropic").into())
        );
        // Not in the sandbox's environment as secrets; resolved on the host only.
        assert!(profile.secrets.is_empty());
        let lookup = |var: &str| (var == "HOST_OPENAI_KEY").then(|| OsString::from("sk-1"));
        let err = profile.resolve_credentials_with(lookup).unwrap_err();
        assert!(format!("{err:#}").contains("ANTHROPIC_API_KEY"), "{err:#}");
    }

    #[test]
    fn credentials_given_to_the_sandbox_too_or_to_a_bad_upstream_are_refused() {
        let egress = "sandbox = { network = \"egress\" }\n";
        for (rest, key, message) in [
            (
                format!(
                    "{egress}env = {{ OPENAI_API_KEY = \"x\" }}\n\
                     credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"https://a.org\" }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY",
                "also set in env",
            ),
            (
                format!(
                    "{egress}secrets.OPENAI_API_KEY = {{ env = \"K\" }}\n\
                     credentials.OPENAI_API_KEY = {{ env = \"K2\", upstream = \"https://a.org\" }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY",
                "also set in secrets",
            ),
            (
                format!(
                    "{egress}secrets.OTHER = {{ env = \"K\" }}\n\
                     credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"https://a.org\" }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY",
                "secret OTHER reads the same host environment variable K",
            ),
            (
                format!(
                    "{egress}grants = {{ env = [\"K\"] }}\n\
                     credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"https://a.org\" }}"
                ),
                "runtimes.codex.grants.env",
                "the source of runtime `codex`'s credential OPENAI_API_KEY",
            ),
            (
                format!(
                    "{egress}credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"ftp://a.org\" }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY.upstream",
                "scheme `ftp` is not http or https",
            ),
            (
                format!(
                    "{egress}credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"a.org\" }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY.upstream",
                "not an http:// or https:// URL",
            ),
            (
                format!(
                    "{egress}credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"https://a.org\", header = \"Authorization: Bearer\" }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY.header",
                "{secret}",
            ),
            (
                format!("{egress}credentials.OPENAI_API_KEY = {{ upstream = \"https://a.org\" }}"),
                "runtimes.codex.credentials.OPENAI_API_KEY",
                "exactly one of `env` or `file`",
            ),
            (
                "sandbox = { network = \"bridge\" }\n\
                 credentials.OPENAI_API_KEY = { env = \"K\", upstream = \"https://a.org\" }"
                    .to_string(),
                "runtimes.codex.credentials.OPENAI_API_KEY",
                "need sandbox.network mode = \"egress\"",
            ),
            (
                format!(
                    "{egress}credentials.OPENAI_API_KEY = {{ env = \"K\", upstream = \"https://a.org\", extra = 1 }}"
                ),
                "runtimes.codex.credentials.OPENAI_API_KEY",
                "unknown field `extra`",
            ),
        ] {
            let shown = format!("{:#}", parse(&rest).unwrap_err());
            assert!(shown.starts_with("conf/aac.toml:"), "{shown}");
            assert!(shown.contains(key), "{key} in {shown}");
            assert!(shown.contains(message), "{message} in {shown}");
        }
    }
}
