//! `sandbox.network` in `aac.toml`: a mode (`"none"`, `"bridge"`, `"per-run"`, `"egress"`) or a
//! table `{ mode = "egress", allow = ["api.openai.com", "*.example.org:443", …] }`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::NetworkMode;
use aac_egress::Allowlist;

/// The network setting as written.
#[derive(Default)]
pub(super) struct RawNetwork {
    pub mode: NetworkMode,
    /// Only with `mode = "egress"`; `None` when not written.
    pub allow: Option<Allowlist>,
    /// `hosts = { "name" = "IP" }`: names the egress proxy resolves to fixed addresses instead of
    /// asking DNS (only with `mode = "egress"`).
    pub hosts: Option<BTreeMap<String, IpAddr>>,
}

impl<'de> Deserialize<'de> for RawNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NetworkVisitor)
    }
}

struct NetworkVisitor;

impl<'de> Visitor<'de> for NetworkVisitor {
    type Value = RawNetwork;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a network mode (`none`, `bridge`, `per-run`, `egress`) or a table \
             { mode = \"egress\", allow = [\"host\", \"*.domain:port\", …] }",
        )
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawNetwork, E> {
        Ok(RawNetwork {
            mode: NetworkMode::deserialize(StrDeserializer::<E>::new(value))?,
            allow: None,
            hosts: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawNetwork, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            mode: NetworkMode,
            allow: Option<Allowlist>,
            hosts: Option<BTreeMap<String, IpAddr>>,
        }
        let table = Table::deserialize(MapAccessDeserializer::new(map))?;
        Ok(RawNetwork {
            mode: table.mode,
            allow: table.allow,
            hosts: table.hosts,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{HostConfig, NetworkMode};

    fn parse(sandbox: &str) -> anyhow::Result<HostConfig> {
        let text = format!(
            "[runtimes.shell]\nplugin = \"shell.wasm\"\ndefault_version = \"1\"\n\
             versions.\"1\".image = \"aac/busybox:latest\"\n{sandbox}\n"
        );
        HostConfig::parse(&text, Path::new("conf/aac.toml"))
    }

    #[test]
    fn egress_takes_an_allowlist_of_names_ports_and_private_tables() {
        let config = parse(
            r#"sandbox = { network = { mode = "egress", allow = ["api.openai.com", "*.example.org:443", { host = "localhost", port = 8080, private = true }] } }"#,
        )
        .unwrap();
        let sandbox = &config.runtimes["shell"].sandbox;
        assert_eq!(sandbox.network, NetworkMode::Egress);
        let allow = &sandbox.egress_allow;
        assert!(allow.find("api.openai.com", 443).is_some());
        assert!(allow.find("x.example.org", 443).is_some());
        assert!(allow.find("x.example.org", 80).is_none());
        assert!(allow.find("localhost", 8080).unwrap().allows_private());

        let pinned = parse(
            r#"sandbox = { network = { mode = "egress", allow = ["a.test"], hosts = { "a.test" = "127.0.0.1" } } }"#,
        )
        .unwrap();
        let hosts = &pinned.runtimes["shell"].sandbox.egress_hosts;
        assert_eq!(
            hosts["a.test"],
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );

        let deny_all = parse(r#"sandbox = { network = "egress" }"#).unwrap();
        assert!(
            deny_all.runtimes["shell"]
                .sandbox
                .egress_allow
                .rules()
                .is_empty()
        );
    }

    #[test]
    fn ready_egress_networks_default_to_two_with_an_egress_runtime_and_none_without() {
        let egress = r#"sandbox = { network = "egress" }"#;
        assert_eq!(parse(egress).unwrap().ready_egress_networks(), 2);
        assert_eq!(parse("").unwrap().ready_egress_networks(), 0);
        let with = |table: &str, sandbox: &str| parse(&format!("{sandbox}\n[egress]\n{table}"));
        assert_eq!(
            with("ready_networks = 5", egress)
                .unwrap()
                .ready_egress_networks(),
            5
        );
        assert_eq!(
            with("ready_networks = 0", egress)
                .unwrap()
                .ready_egress_networks(),
            0
        );
        // A host without egress runtimes makes none, whatever the setting.
        assert_eq!(
            with("ready_networks = 3", "")
                .unwrap()
                .ready_egress_networks(),
            0
        );
        for (table, message) in [
            ("ready_networks = 17", "17 is too many: at most 16"),
            ("ready_networks = -1", "-1"),
            ("ready = 1", "unknown field `ready`"),
        ] {
            let shown = format!("{:#}", with(table, egress).unwrap_err());
            assert!(shown.starts_with("conf/aac.toml:"), "{shown}");
            assert!(shown.contains("egress"), "{shown}");
            assert!(shown.contains(message), "{message} in {shown}");
        }
    }

    #[test]
    fn a_sandbox_runtime_is_a_runtime_name() {
        let config = parse(r#"sandbox = { runtime = "runsc" }"#).unwrap();
        assert_eq!(
            config.runtimes["shell"].sandbox.runtime.as_deref(),
            Some("runsc")
        );
        let shown = format!(
            "{:#}",
            parse(r#"sandbox = { runtime = "run sc" }"#).unwrap_err()
        );
        assert!(
            shown.contains("runtimes.shell.sandbox.runtime")
                && shown.contains("not a runtime name"),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_entry_an_allowlist_without_egress_and_a_warm_pool_are_refused() {
        for (sandbox, key, message) in [
            (
                r#"sandbox = { network = { mode = "egress", allow = ["bad host"] } }"#,
                "runtimes.shell.sandbox.network",
                "`bad host` is not a host name",
            ),
            (
                r#"sandbox = { network = { mode = "bridge", allow = ["a.org"] } }"#,
                "runtimes.shell.sandbox.network.allow",
                "needs mode = \"egress\"",
            ),
            (
                r#"sandbox = { network = { mode = "per-run", hosts = { "a.test" = "127.0.0.1" } } }"#,
                "runtimes.shell.sandbox.network.hosts",
                "needs mode = \"egress\"",
            ),
            (
                r#"sandbox = { network = { mode = "egress", hosts = { "a.test" = "nope" } } }"#,
                "runtimes.shell.sandbox.network",
                "invalid IP address",
            ),
            (
                r#"sandbox = { network = { mode = "egress", allowed = [] } }"#,
                "runtimes.shell.sandbox.network",
                "unknown field `allowed`",
            ),
            (
                "sandbox = { network = \"egress\" }\nwarm_pool = 1",
                "runtimes.shell.warm_pool",
                "warm pool",
            ),
        ] {
            let shown = format!("{:#}", parse(sandbox).unwrap_err());
            assert!(shown.starts_with("conf/aac.toml:"), "{shown}");
            assert!(shown.contains(key), "{key} in {shown}");
            assert!(shown.contains(message), "{message} in {shown}");
        }
    }
}
