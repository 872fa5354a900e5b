//! The allowlist of an `egress` sandbox: which host names (and ports) a connection may go to, and
//! which addresses count as public.
//!
//! An entry is `"api.openai.com"` (ports 80 and 443), `"*.example.org:443"` (any subdomain, not
//! `example.org` itself, on that port only), `"203.0.113.7:8443"` (an IP literal must be listed to
//! be reached), or a table `{ host = "localhost", port = 8080, private = true }` whose `private`
//! lets the name resolve to a loopback, private or link-local address (by default such addresses
//! are refused, whatever the name).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// The ports an entry without one allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// One allowed destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    pattern: HostPattern,
    /// `None`: [`DEFAULT_PORTS`].
    port: Option<u16>,
    /// Whether the name may resolve to a non-public address.
    private: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// A host name, lowercase, without a trailing dot.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
    Ip(IpAddr),
}

impl AllowRule {
    /// Parses `host`, `host:port`, `*.domain[:port]`, `IP`, `[IPv6]:port`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (host, port) = split_host_port(entry)?;
        Self::new(host, port, false)
    }

    /// An entry from its parts (the table form).
    pub fn new(host: &str, port: Option<u16>, private: bool) -> Result<Self, String> {
        if port == Some(0) {
            return Err(format!("allow entry `{host}`: port 0 is not a port"));
        }
        let host = normalize(host);
        let pattern = if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(suffix).map_err(|why| format!("allow entry `{host}`: {why}"))?;
            HostPattern::Subdomains(suffix.to_string())
        } else {
            check_name(&host).map_err(|why| format!("allow entry `{host}`: {why}"))?;
            HostPattern::Name(host)
        };
        Ok(Self {
            pattern,
            port,
            private,
        })
    }

    /// Whether a connection to `host` (normalized) on `port` is allowed by this entry.
    fn matches(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(allowed) => allowed == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok
            && match &self.pattern {
                HostPattern::Name(name) => name == host,
                HostPattern::Subdomains(suffix) => host
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
                HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|asked| asked == *ip),
            }
    }

    /// Whether this entry lets its names reach non-public addresses.
    pub fn allows_private(&self) -> bool {
        self.private
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pattern {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Ip(IpAddr::V6(ip)) if self.port.is_some() => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if self.private {
            write!(f, " (private)")?;
        }
        Ok(())
    }
}

/// `aac.toml`'s spelling: a string or `{ host, port, private }`.
impl<'de> Deserialize<'de> for AllowRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Table(RawTable),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawTable {
            host: String,
            port: Option<u16>,
            #[serde(default)]
            private: bool,
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => AllowRule::parse(&text),
            Raw::Table(table) => AllowRule::new(&table.host, table.port, table.private),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// The entries of one profile; empty allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Allowlist(Vec<AllowRule>);

impl Allowlist {
    pub fn new(rules: Vec<AllowRule>) -> Self {
        Self(rules)
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.0
    }

    /// The first entry allowing `host` (as the client wrote it) on `port`.
    pub fn find(&self, host: &str, port: u16) -> Option<&AllowRule> {
        let host = normalize(host);
        self.0.iter().find(|rule| rule.matches(&host, port))
    }
}

/// Lowercase, without a trailing dot or IPv6 brackets.
pub fn normalize(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

/// `host[:port]` or `[v6][:port]`; a bare IPv6 literal has no port.
pub fn split_host_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let bad_port = |port: &str| format!("`{text}`: `{port}` is not a port number");
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: unclosed `[`"))?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port.parse().map_err(|_| bad_port(port))?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("`{text}`: unexpected `{after}` after `]`")),
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port.parse().map_err(|_| bad_port(port))?))),
        None => Ok((text, None)),
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, 1..=63 bytes each, 253 in all.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` has an empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "`{name}` is not a host name (letters, digits, `-`, `.`; a wildcard only as a leading `*.`)"
            ));
        }
    }
    Ok(())
}

/// Whether `ip` is an address of the public internet: not loopback, private, link-local (cloud
/// metadata lives at 169.254.169.254), shared (CGNAT), multicast, documentation or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        // NAT64 (64:ff9b::/96) can name any IPv4 address, a private one too.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::new(
            entries
                .iter()
                .map(|e| AllowRule::parse(e).unwrap())
                .collect(),
        )
    }

    #[test]
    fn names_match_exactly_case_and_trailing_dot_aside_on_default_ports() {
        let allow = list(&["api.openai.com"]);
        assert!(allow.find("api.openai.com", 443).is_some());
        assert!(allow.find("API.OpenAI.com.", 80).is_some());
        assert!(allow.find("api.openai.com", 22).is_none());
        assert!(allow.find("evil-api.openai.com", 443).is_none());
        assert!(allow.find("api.openai.com.evil.org", 443).is_none());
    }

    #[test]
    fn wildcards_match_subdomains_only_and_ports_are_exact() {
        let allow = list(&["*.example.org:443"]);
        assert!(allow.find("a.example.org", 443).is_some());
        assert!(allow.find("a.b.example.org", 443).is_some());
        assert!(allow.find("example.org", 443).is_none());
        assert!(allow.find("badexample.org", 443).is_none());
        assert!(allow.find("a.example.org", 80).is_none());
    }

    #[test]
    fn ip_literals_match_only_when_listed() {
        let allow = list(&["api.openai.com", "203.0.113.7:8443", "[2001:db8::1]:443"]);
        assert!(allow.find("203.0.113.7", 8443).is_some());
        assert!(allow.find("203.0.113.8", 8443).is_none());
        assert!(allow.find("[2001:db8::1]", 443).is_some());
        assert!(allow.find("127.0.0.1", 443).is_none());
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry() {
        for bad in [
            "",
            "*",
            "a..b",
            "ex ample.org",
            "host:99999",
            "host:0",
            "*.*.org",
            "[::1",
        ] {
            let err = AllowRule::parse(bad).unwrap_err();
            assert!(err.contains('`'), "{bad}: {err}");
        }
    }

    #[test]
    fn non_public_addresses_are_recognized() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.18.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
