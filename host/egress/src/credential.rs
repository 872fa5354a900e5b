//! Credentials the host adds on the way out: a secret bound to one upstream (`https://api.openai.com/v1`)
//! and one header (`Authorization: Bearer {secret}`). The sandbox only ever sees a placeholder; its
//! requests to the gateway route `/cred/<NAME>/…` go to the upstream with the real header.
//!
//! A [`Credential`] holds the secret's value: its `Debug` never shows it, and no error here quotes it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::policy::{normalize, split_host_port};

/// What the sandbox's environment holds instead of a bound secret, so CLIs that insist on the
/// variable start. It is worthless outside: the gateway drops it.
pub const PLACEHOLDER: &str = "aac-credential-placeholder";

/// Where the gateway routes are served: `/cred/<NAME>/<rest>`.
pub const ROUTE_PREFIX: &str = "/cred/";

/// Where a credential's requests go: `http(s)://host[:port][/base-path]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    /// Lowercase, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Prefixed to every forwarded path; empty or starting with `/`, without a trailing `/`.
    pub base_path: String,
}

impl Upstream {
    /// Parses an `http://` or `https://` URL without user info, query or fragment.
    pub fn parse(url: &str) -> Result<Self, String> {
        let raw = url;
        // Errors quote the URL, but never a password written into it.
        let url = &without_user_info(raw);
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => {
                return Err(format!(
                    "`{url}`: scheme `{other}` is not http or https (the gateway speaks HTTP)"
                ));
            }
        };
        if rest.contains(['?', '#']) {
            return Err(format!("`{url}`: a query or fragment is not allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("`{url}`: user info is not allowed"));
        }
        let (host, port) = split_host_port(authority).map_err(|why| format!("`{url}`: {why}"))?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(format!("`{url}`: `{host}` is not a host name or address"));
        }
        if port == Some(0) {
            return Err(format!("`{url}`: port 0 is not a port"));
        }
        Ok(Self {
            tls,
            host: normalize(host),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The `Host` header value: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.base_path)
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// `Name: value with {secret}`: the header the gateway sends, `{secret}` replaced by the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderTemplate {
    pub name: String,
    pub value: String,
}

impl HeaderTemplate {
    pub const SLOT: &'static str = "{secret}";

    pub fn parse(template: &str) -> Result<Self, String> {
        let (name, value) = template.split_once(':').ok_or_else(|| {
            format!(
                "header `{template}` is not `Name: value`, e.g. `Authorization: Bearer {{secret}}`"
            )
        })?;
        let name = name.trim();
        let value = value.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(format!(
                "header `{template}`: `{name}` is not a header name"
            ));
        }
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(format!(
                "header `{template}`: control characters in the value"
            ));
        }
        if !value.contains(Self::SLOT) {
            return Err(format!(
                "header `{template}` does not contain `{}`, where the secret goes",
                Self::SLOT
            ));
        }
        Ok(Self {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

/// One secret bound to its upstream and header, with its value.
#[derive(Clone)]
pub struct Credential {
    pub name: String,
    pub upstream: Upstream,
    pub header_name: String,
    /// The header's value with the secret in it.
    header_value: Arc<[u8]>,
    /// Whether the upstream may resolve to a loopback, private or link-local address.
    pub private: bool,
}

impl Credential {
    /// Binds `secret` (the value, never shown) to `upstream` through `header`. Refuses a value
    /// that would break out of the header line.
    pub fn new(
        name: &str,
        upstream: Upstream,
        header: &HeaderTemplate,
        secret: &str,
        private: bool,
    ) -> Result<Self, String> {
        if secret.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!(
                "credential {name}: the secret's value contains a line break or NUL, which cannot go in a header"
            ));
        }
        Ok(Self {
            name: name.to_string(),
            upstream,
            header_name: header.name.clone(),
            header_value: header
                .value
                .replace(HeaderTemplate::SLOT, secret)
                .into_bytes()
                .into(),
            private,
        })
    }

    pub(crate) fn header_value(&self) -> &[u8] {
        &self.header_value
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("header", &format_args!("{}: <redacted>", self.header_name))
            .field("private", &self.private)
            .finish()
    }
}

/// The credentials of one sandbox, by name.
#[derive(Clone, Debug, Default)]
pub struct Credentials(BTreeMap<String, Credential>);

impl Credentials {
    pub fn new(credentials: impl IntoIterator<Item = Credential>) -> Self {
        Self(
            credentials
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The gateway URL of each credential, as the sandbox reaches it through `gateway`
    /// (`host:port` of the proxy).
    pub fn urls(&self, gateway: std::net::SocketAddr) -> BTreeMap<String, String> {
        self.0
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    format!("http://{gateway}{ROUTE_PREFIX}{name}"),
                )
            })
            .collect()
    }
}

/// `url` with any `user[:password]@` before the host replaced by `…@`.
fn without_user_info(url: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| start + at);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}…{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_error_never_quotes_a_password() {
        let err = Upstream::parse("https://user:hunter2@api.example.com/v1").unwrap_err();
        assert!(
            !err.contains("hunter2") && err.contains("…@api.example.com"),
            "{err}"
        );
        let err = Upstream::parse("ftp://user:hunter2@api.example.com").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn upstreams_parse_with_default_ports_and_base_paths() {
        let openai = Upstream::parse("https://api.openai.com/v1/").unwrap();
        assert!(openai.tls);
        assert_eq!((openai.host.as_str(), openai.port), ("api.openai.com", 443));
        assert_eq!(openai.base_path, "/v1");
        assert_eq!(openai.host_header(), "api.openai.com");
        let local = Upstream::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(local.host_header(), "127.0.0.1:8080");
        assert_eq!(local.base_path, "");
        assert_eq!(local.to_string(), "http://127.0.0.1:8080");
        for (bad, why) in [
            ("ftp://a.org", "scheme `ftp`"),
            ("api.openai.com", "not an http"),
            ("https://u:p@a.org", "user info"),
            ("https://a.org/?x=1", "query"),
            ("https://a.org:0", "port 0"),
            ("https://a b", "not a host"),
        ] {
            let err = Upstream::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn header_templates_need_a_name_and_the_slot() {
        let t = HeaderTemplate::parse("x-api-key: {secret}").unwrap();
        assert_eq!(
            (t.name.as_str(), t.value.as_str()),
            ("x-api-key", "{secret}")
        );
        assert!(
            HeaderTemplate::parse("Authorization: Bearer")
                .unwrap_err()
                .contains("{secret}")
        );
        assert!(HeaderTemplate::parse("no colon").is_err());
        assert!(HeaderTemplate::parse("bad name: {secret}").is_err());
    }

    #[test]
    fn a_credential_never_shows_its_value() {
        let header = HeaderTemplate::parse("Authorization: Bearer {secret}").unwrap();
        let upstream = Upstream::parse("https://api.openai.com/v1").unwrap();
        let credential =
            Credential::new("KEY", upstream.clone(), &header, "sk-real", false).unwrap();
        assert_eq!(credential.header_value(), b"Bearer sk-real");
        assert!(!format!("{credential:?}").contains("sk-real"));
        let err = Credential::new("KEY", upstream, &header, "sk\r\nX: y", false).unwrap_err();
        assert!(err.contains("line break") && !err.contains("sk"), "{err}");
    }
}
