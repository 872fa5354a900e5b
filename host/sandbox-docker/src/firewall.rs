//! The host firewall around an `egress` sandbox network. Docker's `internal` networks have no route
//! out, but a container on one still reaches this host at the network's gateway address, on every
//! port a host service listens on. These rules drop everything entering from the network's bridge
//! except TCP to the egress proxy's port. They are tagged with a comment naming the network, so
//! they are removed with it and a reaper finds them after a crash.

use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// The comment on every rule of network `name`.
fn tag(network: &str) -> String {
    format!("{TAG_PREFIX}{network}")
}
const TAG_PREFIX: &str = "aac-egress:";

/// The firewall tools: IPv4 for the proxy's port, IPv6 so link-local addresses are no way around.
const TOOLS: [&str; 2] = ["iptables", "ip6tables"];

/// The installed rules of one network; [`Firewall::remove`] deletes them.
#[derive(Debug)]
pub(super) struct Firewall {
    network: String,
    /// Each rule as `(tool, arguments after -I/-D INPUT)`.
    rules: Vec<(&'static str, Vec<String>)>,
}

/// Fails with what is missing when this host cannot install the rules (no iptables, not root).
pub(super) async fn check() -> Result<()> {
    for tool in TOOLS {
        run(tool, &["-w", "-S", "INPUT"]).await.with_context(|| {
            format!(
                "egress sandboxes need `{tool}` (and the right to change the host firewall, i.e. \
                 root or CAP_NET_ADMIN) to stop the sandbox reaching this host"
            )
        })?;
    }
    Ok(())
}

impl Firewall {
    /// Drops traffic entering from `bridge` except TCP to `gateway:port`. On failure, the rules
    /// already added are removed.
    pub(super) async fn install(
        network: &str,
        bridge: &str,
        gateway: std::net::IpAddr,
        port: u16,
    ) -> Result<Self> {
        let comment = tag(network);
        let common = |extra: &[&str]| -> Vec<String> {
            let mut args: Vec<String> = ["-i", bridge].iter().map(|s| s.to_string()).collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            args.extend(["-m", "comment", "--comment", &comment].map(String::from));
            args
        };
        let port = port.to_string();
        let gateway = gateway.to_string();
        // Inserted at the top in this order: the ACCEPT ends up before the DROPs.
        let rules = vec![
            ("ip6tables", common(&["-j", "DROP"])),
            ("iptables", common(&["-j", "DROP"])),
            (
                "iptables",
                common(&[
                    "-p", "tcp", "-d", &gateway, "--dport", &port, "-j", "ACCEPT",
                ]),
            ),
        ];
        let mut installed = Self {
            network: network.to_string(),
            rules: Vec::new(),
        };
        for (tool, args) in rules {
            let mut insert = vec!["-w".to_string(), "-I".into(), "INPUT".into(), "1".into()];
            insert.extend(args.iter().cloned());
            if let Err(err) = run(tool, &insert).await {
                installed.remove().await;
                return Err(err.context(format!(
                    "could not install the firewall rules of egress network {network}"
                )));
            }
            installed.rules.push((tool, args));
        }
        Ok(installed)
    }

    /// Deletes the rules (each once; a rule already gone is fine).
    pub(super) async fn remove(&mut self) {
        for (tool, args) in self.rules.drain(..).rev() {
            let mut delete = vec!["-w".to_string(), "-D".into(), "INPUT".into()];
            delete.extend(args);
            if let Err(err) = run(tool, &delete).await {
                tracing::warn!(network = %self.network, error = %format!("{err:#}"), "could not remove a firewall rule");
            }
        }
    }
}

/// Deletes the tagged rules of every network `live` does not name (a crashed host's). `live` must
/// be listed after this reads the rules, so a network created meanwhile is not mistaken for gone.
pub(super) async fn reap(live: impl AsyncFnOnce() -> Option<Vec<String>>) -> usize {
    let mut tagged = Vec::new();
    for tool in TOOLS {
        let Ok(listing) = run(tool, &["-w", "-S", "INPUT"]).await else {
            continue;
        };
        for line in listing.lines() {
            // `-S` quotes comments; the tag has no spaces, so the quotes are all there is to undo.
            let words: Vec<&str> = line
                .split_whitespace()
                .map(|word| word.trim_matches('"'))
                .collect();
            let network = words
                .windows(2)
                .find(|w| w[0] == "--comment")
                .and_then(|w| w[1].strip_prefix(TAG_PREFIX));
            if let (Some(network), Some(("-A", rest))) =
                (network, words.split_first().map(|(a, r)| (*a, r)))
            {
                tagged.push((
                    tool,
                    network.to_string(),
                    rest[1..].iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                ));
            }
        }
    }
    if tagged.is_empty() {
        return 0;
    }
    let Some(live) = live().await else { return 0 };
    let mut removed = 0;
    for (tool, network, args) in tagged {
        if live.contains(&network) {
            continue;
        }
        let mut delete = vec!["-w".to_string(), "-D".into(), "INPUT".into()];
        delete.extend(args);
        match run(tool, &delete).await {
            Ok(_) => {
                removed += 1;
                tracing::info!(%network, "removed an orphaned egress firewall rule");
            }
            Err(err) => {
                tracing::warn!(%network, error = %format!("{err:#}"), "could not remove an orphaned firewall rule")
            }
        }
    }
    removed
}

/// Runs `tool args` (bounded in time) and returns its stdout; a failure carries its stderr.
async fn run<S: AsRef<str>>(tool: &str, args: &[S]) -> Result<String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut command = Command::new(tool);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .with_context(|| format!("`{tool} {}` did not finish within 30s", args.join(" ")))?
        .with_context(|| format!("could not run `{tool}`"))?;
    if !output.status.success() {
        bail!(
            "`{tool} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
