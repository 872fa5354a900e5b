//! `network = "egress"`: a shell sandbox on its own internal network reaches an allowed name only
//! through the host's egress proxy, and nothing else — not a name outside the allowlist, not an
//! allowed name that resolves to loopback, not an IP literal, not the host's other services at the
//! gateway or the bridge address, not cloud metadata — however it asks. Each attempt through the
//! proxy is a `network.denied` event; the firewall rules go with the network.

use std::net::IpAddr;
use std::sync::Arc;

use aac_host::local::LocalTurn;
use aac_host::outcome::{TerminalStatus, TurnEvent};
use aac_host::sandbox::NetworkMode;
use aac_host::sandbox::docker::HOST_ALIAS;
use aac_tests::mock_http::sandbox_host_address;
use aac_tests::upstream::{HELLO, Upstream};
use aac_tests::{TurnRecord, containers_of_run, local_turn, plugin, test_host};
use tokio_util::sync::CancellationToken;

/// The allowlist of these tests: `upstream.test` (pinned to loopback, private allowed) and
/// `rebound.test` (pinned to loopback too, but not allowed to reach a private address).
fn egress_turn(upstream: &Upstream, prompt: String) -> LocalTurn {
    let port = upstream.addr.port();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let allow = aac_egress::Allowlist::new(vec![
        aac_egress::AllowRule::new("upstream.test", Some(port), true).unwrap(),
        aac_egress::AllowRule::parse(&format!("rebound.test:{port}")).unwrap(),
    ]);
    LocalTurn {
        network: NetworkMode::Egress,
        egress_allow: Arc::new(allow),
        egress_resolver: aac_egress::Resolver::default()
            .with_fixed("upstream.test", vec![loopback])
            .with_fixed("rebound.test", vec![loopback]),
        ..LocalTurn::new(plugin("shell"), prompt)
    }
}

fn network_events<'a>(record: &'a TurnRecord, kind: &str) -> Vec<&'a TurnEvent> {
    record.events.iter().filter(|e| e.kind == kind).collect()
}

/// The stdout line starting with `label:`.
fn answer(stdout: &[String], label: &str) -> String {
    let prefix = format!("{label}:");
    stdout
        .iter()
        .find(|line| line.starts_with(&prefix))
        .cloned()
        .unwrap_or_else(|| panic!("no line {prefix} in {stdout:#?}"))
}

/// Every firewall rule the host tagged names a network that still exists.
async fn assert_no_stale_firewall_rules() {
    let networks = aac_tests::docker()
        .await
        .client()
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| n.name)
        .collect::<Vec<_>>();
    let rules = std::process::Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .expect("iptables runs");
    for line in String::from_utf8_lossy(&rules.stdout).lines() {
        if let Some(tagged) = line.split("aac-egress:").nth(1) {
            let network = tagged.split_whitespace().next().unwrap().trim_matches('"');
            assert!(networks.iter().any(|n| n == network), "stale rule: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_sandbox_reaches_only_allowed_names_and_only_through_the_proxy() {
    let upstream = Upstream::start("127.0.0.1:0").await;
    let port = upstream.addr.port();
    // A service of this host on every address: the sandbox must not reach it, at the gateway or
    // at the bridge's address.
    let host_service = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let host_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = host_hits.clone();
    let service = tokio::spawn(async move {
        while let Ok((mut socket, _)) = host_service.accept().await {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"host-secret\n").await;
        }
    });
    let bridge = sandbox_host_address().await;
    let probes = [
        (
            "allowed",
            format!("wget -O - http://upstream.test:{port}/hello"),
        ),
        (
            "unlisted",
            format!("wget -O - http://evil.example:{port}/hello"),
        ),
        (
            "rebound",
            format!("wget -O - http://rebound.test:{port}/hello"),
        ),
        (
            "ip-literal",
            format!("printf 'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n' | nc -w 5 $gw $pp"),
        ),
        (
            "metadata-connect",
            "printf 'CONNECT 169.254.169.254:80 HTTP/1.1\\r\\n\\r\\n' | nc -w 5 $gw $pp"
                .to_string(),
        ),
        (
            "host-mismatch",
            format!(
                "printf 'GET http://upstream.test:{port}/hello HTTP/1.1\\r\\nHost: evil.example\\r\\n\\r\\n' | nc -w 5 $gw $pp"
            ),
        ),
        // Skipping the proxy leaves no way out: no name resolves, no address routes.
        (
            "no-proxy",
            format!("no_proxy='*' NO_PROXY='*' wget -O - http://evil.example:{port}/hello"),
        ),
        (
            "no-proxy-env",
            format!("env -u http_proxy -u HTTP_PROXY wget -O - http://upstream.test:{port}/hello"),
        ),
        ("gateway-port", format!("echo x | nc -w 3 $gw {host_port}")),
        (
            "alias-port",
            format!("echo x | nc -w 3 {HOST_ALIAS} {host_port}"),
        ),
        (
            "bridge-port",
            format!("echo x | nc -w 3 {bridge} {host_port}"),
        ),
        (
            "metadata",
            "echo x | nc -w 3 169.254.169.254 80".to_string(),
        ),
        (
            "loopback-upstream",
            format!("echo x | nc -w 3 127.0.0.1 {port}"),
        ),
    ];
    let mut prompt = String::from(
        "proxy=${http_proxy#http://}; gw=${proxy%:*}; pp=${proxy##*:}\necho \"env:$HTTP_PROXY|$HTTPS_PROXY|$NO_PROXY\"\n",
    );
    for (label, command) in &probes {
        prompt.push_str(&format!(
            "echo \"{label}:$( ( {command}; echo rc=$? ) 2>&1 | tr '\\n' ' ')\"\n"
        ));
    }
    let record = local_turn(
        &test_host(None),
        egress_turn(&upstream, prompt),
        CancellationToken::new(),
    )
    .await;
    service.abort();
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}\nstderr: {:?}",
        record.report.outcome,
        record.lines("stderr")
    );
    let stdout = record.lines("stdout");
    let env = answer(&stdout, "env");
    assert!(env.starts_with("env:http://"), "{env}");
    // The gateway address is exempt too: the credential gateway is served there directly.
    assert!(env.contains("|localhost,127.0.0.1,::1,"), "{env}");

    assert!(
        answer(&stdout, "allowed").contains(&format!("{HELLO} /hello")),
        "{stdout:#?}"
    );
    for label in [
        "unlisted",
        "rebound",
        "ip-literal",
        "metadata-connect",
        "host-mismatch",
        "no-proxy",
        "no-proxy-env",
        "gateway-port",
        "alias-port",
        "bridge-port",
        "metadata",
        "loopback-upstream",
    ] {
        let line = answer(&stdout, label);
        assert!(!line.contains(HELLO), "{line}");
        assert!(!line.contains("host-secret"), "{line}");
    }
    for label in ["ip-literal", "metadata-connect", "host-mismatch"] {
        let line = answer(&stdout, label);
        assert!(line.contains("403"), "{line}");
    }
    assert_eq!(
        host_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the sandbox reached a host service"
    );
    assert_eq!(
        upstream.requests(),
        1,
        "only the allowed request reached the upstream"
    );

    let allowed = network_events(&record, "network.allowed");
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    let payload = &allowed[0].payload;
    assert_eq!(payload["host"], "upstream.test");
    assert_eq!(payload["port"], port);
    assert!(
        payload["bytes_down"].as_u64().unwrap() > HELLO.len() as u64,
        "{payload}"
    );
    assert!(payload["bytes_up"].as_u64().unwrap() > 0, "{payload}");

    let denied = network_events(&record, "network.denied");
    let reasons: Vec<String> = denied
        .iter()
        .map(|e| format!("{} {}", e.payload["host"], e.payload["reason"]))
        .collect();
    for (host, why) in [
        ("evil.example", "not in the allowlist"),
        ("rebound.test", "non-public"),
        ("127.0.0.1", "IP address"),
        ("169.254.169.254", "IP address"),
        ("upstream.test", "Host header"),
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(host) && r.contains(why)),
            "no denial of {host} ({why}) in {reasons:#?}"
        );
    }
    aac_tests::event_registry::assert_registered(&record.events);
    assert_eq!(containers_of_run(&record.report.run_id).await, 0);
    assert_no_stale_firewall_rules().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_iptables_an_egress_sandbox_is_refused_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    // A PATH without the firewall tools: the host cannot fence the network in.
    let output = std::process::Command::new(aac_tests::aac_host_binary())
        .env("PATH", dir.path())
        .env("AAC_CACHE_DIR", dir.path().join("cache"))
        .args(["run", "--plugin"])
        .arg(plugin("shell"))
        .args(["--runner-id", "egress-no-iptables", "--network", "egress"])
        .args(["--allow", "example.org"])
        .arg("echo never-ran")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{all}");
    assert!(all.contains("egress sandboxes need `iptables`"), "{all}");
    assert!(!all.contains("never-ran\n"), "{all}");
    assert!(
        aac_tests::containers_with_label("dev.aac-host.runner=egress-no-iptables")
            .await
            .is_empty()
    );
    let networks = aac_tests::docker()
        .await
        .client()
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec!["dev.aac-host.runner=egress-no-iptables".to_string()],
            )])),
        }))
        .await
        .unwrap();
    assert!(networks.is_empty(), "{networks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_removes_firewall_rules_of_networks_that_are_gone() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // What a crashed host leaves: a tagged rule whose network no longer exists.
    let gone = format!("aac-gone{nanos:x}");
    let comment = format!("aac-egress:{gone}");
    let rule = [
        "-i",
        "aacxreapertest",
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "DROP",
    ];
    let status = std::process::Command::new("iptables")
        .args(["-w", "-I", "INPUT", "1"])
        .args(rule)
        .status()
        .unwrap();
    assert!(status.success());
    let removed = aac_tests::docker()
        .await
        .reap_orphans("egress-reaper-test")
        .await
        .unwrap();
    let _ = removed;
    let listing = std::process::Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    if listing.contains(&comment) {
        // Leave the machine as it was before failing.
        let _ = std::process::Command::new("iptables")
            .args(["-w", "-D", "INPUT"])
            .args(rule)
            .status();
        panic!("the orphaned rule is still there:\n{listing}");
    }
    assert_no_stale_firewall_rules().await;
}

/// This process's peak resident memory, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_through_the_proxy_streams_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let upstream = Upstream::start("127.0.0.1:0").await;
    let port = upstream.addr.port();
    let prompt = format!(
        "wget -O /dev/null http://upstream.test:{port}/bytes/{SIZE} 2>&1 | tail -1; echo done"
    );
    let before = peak_rss();
    let record = local_turn(
        &test_host(None),
        egress_turn(&upstream, prompt),
        CancellationToken::new(),
    )
    .await;
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}",
        record.report.outcome
    );
    let allowed = network_events(&record, "network.allowed");
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    let down = allowed[0].payload["bytes_down"].as_u64().unwrap();
    assert!(down > SIZE, "{down} bytes came down");
    // The bytes pass through two kernel pipes (splice), never the host's memory: 1 GiB came down.
    assert!(
        grown < 64 << 20,
        "the host's peak memory grew by {grown} bytes during a {SIZE}-byte download"
    );
}
