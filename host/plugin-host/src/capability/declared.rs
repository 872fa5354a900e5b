//! What a plugin declares it needs (a JSON custom section `aac:capabilities` embedded in the
//! component), what the operator granted (`grants` in `aac.toml`), and the effective set: declared
//! AND granted. An empty declaration or an empty grant denies everything.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use wasmparser::{Parser, Payload};

/// The custom section a plugin declares its capabilities in (`aac_sdk::declare_capabilities!`).
pub const SECTION: &str = "aac:capabilities";

/// A set of capabilities: declared, granted or effective.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Hosts reachable over HTTP: `host`, `host:port`, `*.domain` or `*`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Host environment variables the plugin may read.
    #[serde(default)]
    pub env: Vec<String>,
}

impl Capabilities {
    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.env.is_empty()
    }

    /// What the operator granted, as a capability set.
    pub fn granted(grants: &Capabilities) -> Self {
        Self {
            http: grants.http.clone(),
            env: grants.env.clone(),
        }
    }

    /// Declared AND granted. For hosts the narrower of two matching patterns is kept, so a plugin
    /// declaring `*` gets exactly the hosts the operator lists, and a grant of `*.corp` gives a
    /// plugin declaring `bundles.corp` only that host.
    pub fn effective(declared: &Self, granted: &Capabilities) -> Self {
        let mut http = Vec::new();
        for grant in &granted.http {
            for wanted in &declared.http {
                let narrower = if pattern_covers(wanted, grant) {
                    Some(grant)
                } else if pattern_covers(grant, wanted) {
                    Some(wanted)
                } else {
                    None
                };
                if let Some(host) = narrower
                    && !http.contains(host)
                {
                    http.push(host.clone());
                }
            }
        }
        let env = declared
            .env
            .iter()
            .filter(|var| granted.env.contains(var))
            .cloned()
            .collect();
        Self { http, env }
    }

    /// Whether a request to `host` on `port` is allowed by this (effective) set.
    pub fn allows_http(&self, host: &str, port: u16) -> bool {
        let authority = format!("{}:{port}", host.to_ascii_lowercase());
        self.http
            .iter()
            .any(|pattern| pattern_covers(pattern, &authority))
    }
}

/// Whether every authority matched by `inner` is matched by `outer`. Patterns: `*`, `*.domain`,
/// `host` (any port) and `host:port`. Case-insensitive.
fn pattern_covers(outer: &str, inner: &str) -> bool {
    let outer = outer.to_ascii_lowercase();
    let inner = inner.to_ascii_lowercase();
    if outer == "*" {
        return true;
    }
    let (outer_host, outer_port) = split_port(&outer);
    let (inner_host, inner_port) = split_port(&inner);
    if let Some(port) = outer_port
        && inner_port != Some(port)
    {
        return false;
    }
    match outer_host.strip_prefix("*.") {
        Some(domain) => match inner_host.strip_prefix("*.") {
            Some(inner_domain) => {
                inner_domain == domain || inner_domain.ends_with(&format!(".{domain}"))
            }
            None => inner_host.ends_with(&format!(".{domain}")),
        },
        None => outer_host == inner_host,
    }
}

/// `host:port` → (`host`, Some(port)); IPv6 literals in brackets keep their colons.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

/// Reads the declaration embedded in a component: nothing declared when there is no section.
/// The section may sit in a nested core module (where `link_section` puts it).
pub fn read_declared(bytes: &[u8]) -> Result<Capabilities> {
    let mut found: Option<Capabilities> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let Payload::CustomSection(section) = payload? else {
            continue;
        };
        if section.name() != SECTION {
            continue;
        }
        if found.is_some() {
            bail!("more than one `{SECTION}` custom section");
        }
        let text = std::str::from_utf8(section.data())
            .with_context(|| format!("the `{SECTION}` custom section is not UTF-8"))?;
        let caps: Capabilities = serde_json::from_str(text).with_context(|| {
            format!("the `{SECTION}` custom section is not valid JSON of the form {{\"http\": [..], \"env\": [..]}}: {text:?}")
        })?;
        found = Some(caps);
    }
    Ok(found.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(http: &[&str], env: &[&str]) -> Capabilities {
        Capabilities {
            http: http.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn caps(http: &[&str], env: &[&str]) -> Capabilities {
        Capabilities {
            http: http.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn effective_is_declared_and_granted() {
        let declared = caps(&["*"], &["HOME", "LANG"]);
        let effective = Capabilities::effective(&declared, &grants(&["127.0.0.1:8080"], &["LANG"]));
        assert_eq!(effective, caps(&["127.0.0.1:8080"], &["LANG"]));
    }

    #[test]
    fn empty_on_either_side_denies_all() {
        let declared = caps(&["*"], &["LANG"]);
        assert!(Capabilities::effective(&declared, &Capabilities::default()).is_empty());
        let nothing = Capabilities::default();
        assert!(Capabilities::effective(&nothing, &grants(&["*"], &["LANG"])).is_empty());
    }

    #[test]
    fn the_narrower_pattern_wins() {
        let declared = caps(&["bundles.corp", "other.net"], &[]);
        let effective = Capabilities::effective(&declared, &grants(&["*.corp"], &[]));
        assert_eq!(effective.http, ["bundles.corp"]);
        assert!(effective.allows_http("bundles.corp", 443));
        assert!(effective.allows_http("BUNDLES.corp", 80));
        assert!(!effective.allows_http("other.net", 443));
        assert!(!effective.allows_http("evil.corp", 443));
    }

    #[test]
    fn ports_are_matched_when_given() {
        let effective = caps(&["127.0.0.1:8080"], &[]);
        assert!(effective.allows_http("127.0.0.1", 8080));
        assert!(!effective.allows_http("127.0.0.1", 8081));
        assert!(!effective.allows_http("127.0.0.2", 8080));
        let any_port = caps(&["localhost"], &[]);
        assert!(any_port.allows_http("localhost", 1234));
        let v6 = caps(&["[::1]:80"], &[]);
        assert!(v6.allows_http("[::1]", 80));
    }

    #[test]
    fn a_component_without_the_section_declares_nothing() {
        // A core module header is enough for the parser to walk sections.
        assert_eq!(
            read_declared(b"\0asm\x01\0\0\0").unwrap(),
            Capabilities::default()
        );
    }
}
