//! Secrets of a runtime profile: where each value comes from (`{ env = "X" }` or
//! `{ file = "path" }`), and resolving them on the host.
//!
//! Values go into the sandbox's environment, never into the plugin, and never into a message: every
//! error names the secret and where it was looked for, not what was found.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// Where a secret's value is read from, on the host, when a sandbox is prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `{ env = "NAME" }`: the host environment variable `NAME`.
    Env(String),
    /// `{ file = "path" }`: the contents of a file (relative paths are resolved against the config
    /// file's directory); one trailing newline is dropped.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the value of the secret `key`, looking environment variables up with `lookup`.
    pub(crate) fn resolve(
        &self,
        key: &str,
        runtime: &str,
        lookup: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<String> {
        let value = match self {
            SecretSource::Env(var) => {
                let raw = lookup(var).ok_or_else(|| {
                    anyhow!("secret {key} of runtime {runtime}: host environment variable {var} is not set")
                })?;
                raw.into_string().map_err(|_| {
                    anyhow!("secret {key} of runtime {runtime}: host environment variable {var} is not valid UTF-8")
                })?
            }
            SecretSource::File(path) => read_secret_file(path).map_err(|why| {
                anyhow!(
                    "secret {key} of runtime {runtime}: file {}: {why}",
                    path.display()
                )
            })?,
        };
        if value.is_empty() {
            bail!(
                "secret {key} of runtime {runtime}: {} is empty",
                self.describe()
            );
        }
        Ok(value)
    }

    /// Where the value is looked for, for messages: `host environment variable X` or `file /p`.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(var) => format!("host environment variable {var}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// The file's contents without one trailing newline. The error never quotes the contents.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("could not read it: {e}"))?;
    let mut text = String::from_utf8(bytes).map_err(|_| "it is not valid UTF-8".to_string())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor;

        const FIELDS: &[&str] = &["env", "file"];
        const ONE_OF: &str = "a secret takes exactly one of `env` or `file`, e.g. { env = \"OPENAI_API_KEY\" } or { file = \"secrets/key\" }";

        const NOT_A_VALUE: &str = "a secret is a table { env = \"NAME\" } or { file = \"path\" } saying where its \
             value is read from; the value itself never goes in the config file";

        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = SecretSource;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table { env = \"NAME\" } or { file = \"path\" }")
            }

            // A scalar here is most likely the secret itself, written into the file by mistake:
            // refuse it without repeating it.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(NOT_A_VALUE))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretSource, E> {
                Err(E::custom(NOT_A_VALUE))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretSource, E> {
                Err(E::custom(NOT_A_VALUE))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretSource, E> {
                Err(E::custom(NOT_A_VALUE))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
                let mut source = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value = match key.as_str() {
                        "env" => SecretSource::Env(map.next_value()?),
                        "file" => SecretSource::File(PathBuf::from(map.next_value::<String>()?)),
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    };
                    if source.replace(value).is_some() {
                        return Err(de::Error::custom(ONE_OF));
                    }
                }
                source.ok_or_else(|| de::Error::custom(ONE_OF))
            }
        }

        deserializer.deserialize_any(SourceVisitor)
    }
}
