//! Hostile shell turns in an `egress` sandbox with busybox's `nc` and `wget` and explicit
//! addresses (`/dev/tcp` is bash-only): another egress run's container, a container on Docker's
//! bridge, the bridge's own address, cloud metadata, the credential gateway with a name that has no
//! binding — through the proxy, and directly with `NO_PROXY` set by the agent itself. Nothing is
//! reached; each attempt through the proxy is a `network.denied` event, each direct attempt simply
//! fails (no route), and no event claims a connection was allowed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aac_host::local::LocalTurn;
use aac_host::outcome::TerminalStatus;
use aac_host::sandbox::NetworkMode;
use aac_tests::mock_http::sandbox_host_address;
use aac_tests::{TurnRecord, containers_of_run, local_turn, plugin, test_host};
use tokio_util::sync::CancellationToken;

const LISTEN_PORT: u16 = 8080;
// Busybox's `wget -T` crashes when it goes through a proxy, so only direct attempts set one: their
// packets are dropped (Docker does not forward from an internal network), so they time out.

/// A turn that writes its address to `addr`, listens on [`LISTEN_PORT`] (whatever arrives goes to
/// `got.txt`) until the test creates `stop`.
fn listener_turn(workspace: &Path, network: NetworkMode) -> LocalTurn {
    let prompt = format!(
        "nc -l -p {LISTEN_PORT} > /workspace/got.txt 2>&1 &\n\
         hostname -i > /workspace/addr.tmp; mv /workspace/addr.tmp /workspace/addr\n\
         while [ ! -f /workspace/stop ]; do sleep 1; done\n\
         kill $! 2>/dev/null; echo listener-done\n"
    );
    LocalTurn {
        workspace: Some(workspace.to_path_buf()),
        network,
        ..LocalTurn::new(plugin("shell"), prompt)
    }
}

/// The address a listener turn wrote, once it is there.
async fn address_of(workspace: &Path) -> String {
    let file = workspace.join("addr");
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(&file)
            && !text.trim().is_empty()
        {
            return text.split_whitespace().next().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no address from the listener in {}", workspace.display());
}

/// The stdout line starting with `label:`.
fn answer(record: &TurnRecord, label: &str) -> String {
    let prefix = format!("{label}:");
    record
        .lines("stdout")
        .into_iter()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line {prefix} in {:#?}", record.lines("stdout")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_runs_the_bridge_metadata_and_unbound_gateway_names_stay_out_of_reach() {
    let host = test_host(None);
    // A service of this host on every address, reachable only if the boundary leaks.
    let host_service = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let host_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = host_hits.clone();
    let service = tokio::spawn(async move {
        while let Ok((_socket, _)) = host_service.accept().await {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    // Another egress run and a container on the bridge, both listening.
    let other_egress = tempfile::tempdir().unwrap();
    let on_bridge = tempfile::tempdir().unwrap();
    let first = tokio::spawn({
        let (host, turn) = (
            host.clone(),
            listener_turn(other_egress.path(), NetworkMode::Egress),
        );
        async move { local_turn(&host, turn, CancellationToken::new()).await }
    });
    let second = tokio::spawn({
        let (host, turn) = (
            host.clone(),
            listener_turn(on_bridge.path(), NetworkMode::Bridge),
        );
        async move { local_turn(&host, turn, CancellationToken::new()).await }
    });
    let other = address_of(other_egress.path()).await;
    let bridged = address_of(on_bridge.path()).await;
    let bridge_gateway = sandbox_host_address().await;
    let p = LISTEN_PORT;

    // Busybox's wget ignores NO_PROXY, so a direct attempt also unsets the proxy variables: what an
    // agent skipping the proxy does.
    let direct = "env -u http_proxy -u HTTP_PROXY no_proxy='*' NO_PROXY='*' timeout 5";
    let probes = [
        // Another run's container on its own internal network.
        ("other-direct", format!("echo x | nc -w 3 {other} {p}")),
        (
            "other-no-proxy",
            format!("{direct} wget -O - http://{other}:{p}/"),
        ),
        ("other-proxy", format!("wget -O - http://{other}:{p}/")),
        (
            "other-connect",
            format!("printf 'CONNECT {other}:{p} HTTP/1.1\\r\\n\\r\\n' | nc -w 5 $gw $pp"),
        ),
        // A container on Docker's default bridge, and the bridge's own address (the host).
        ("bridged-direct", format!("echo x | nc -w 3 {bridged} {p}")),
        (
            "bridged-no-proxy",
            format!("{direct} wget -O - http://{bridged}:{p}/"),
        ),
        ("bridged-proxy", format!("wget -O - http://{bridged}:{p}/")),
        (
            "host-no-proxy",
            format!("{direct} wget -O - http://{bridge_gateway}:{host_port}/"),
        ),
        // DNS: Docker's embedded resolver would forward this to the host's resolvers.
        ("dns", "timeout 5 nslookup exfil-probe.example".into()),
        // Cloud metadata.
        (
            "metadata-proxy",
            "wget -O - http://169.254.169.254/latest/meta-data/".into(),
        ),
        (
            "metadata-no-proxy",
            format!("{direct} wget -O - http://169.254.169.254/latest/meta-data/"),
        ),
        // The credential gateway, for a name no credential is bound to: directly (the gateway
        // address is in NO_PROXY) and as an absolute URI through the proxy.
        (
            "gateway-direct",
            format!("{direct} wget -O - http://$gw:$pp/cred/NOT_BOUND/v1/models"),
        ),
        (
            "gateway-proxy",
            "NO_PROXY= no_proxy= wget -O - http://$gw:$pp/cred/NOT_BOUND/v1/models".into(),
        ),
    ];
    let mut prompt = String::from("proxy=${http_proxy#http://}; gw=${proxy%:*}; pp=${proxy##*:}\n");
    for (label, command) in &probes {
        prompt.push_str(&format!(
            "echo \"{label}:$( ( {command}; echo rc=$? ) 2>&1 | tr '\\n' ' ')\"\n"
        ));
    }
    let record = local_turn(
        &host,
        LocalTurn {
            network: NetworkMode::Egress,
            ..LocalTurn::new(plugin("shell"), prompt)
        },
        CancellationToken::new(),
    )
    .await;

    std::fs::write(other_egress.path().join("stop"), "").unwrap();
    std::fs::write(on_bridge.path().join("stop"), "").unwrap();
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    service.abort();

    assert_eq!(
        record.report.outcome.status,
        TerminalStatus::Completed,
        "{:?}",
        record.report.outcome
    );
    for (label, _) in &probes {
        let line = answer(&record, label);
        // `nc` talking to the proxy itself succeeds; what it got is the 403 checked below.
        if *label != "other-connect" {
            assert!(!line.contains("rc=0"), "{line}");
        }
    }
    for label in [
        "other-proxy",
        "other-connect",
        "bridged-proxy",
        "metadata-proxy",
    ] {
        assert!(
            answer(&record, label).contains("403"),
            "{}",
            answer(&record, label)
        );
    }
    for label in ["gateway-direct", "gateway-proxy"] {
        assert!(
            answer(&record, label).contains("403"),
            "{}",
            answer(&record, label)
        );
    }
    for (listener, workspace) in [(&first, &other_egress), (&second, &on_bridge)] {
        assert_eq!(listener.report.outcome.status, TerminalStatus::Completed);
        let got = std::fs::read_to_string(workspace.path().join("got.txt")).unwrap_or_default();
        assert_eq!(got, "", "a connection reached a listener");
        assert_eq!(containers_of_run(&listener.report.run_id).await, 0);
    }
    assert_eq!(
        host_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the sandbox reached a host service"
    );

    let denied: Vec<String> = record
        .events
        .iter()
        .filter(|e| e.kind == "network.denied")
        .map(|e| format!("{} {}", e.payload["host"], e.payload["reason"]))
        .collect();
    assert!(
        !record.events.iter().any(|e| e.kind == "network.allowed"),
        "{:#?}",
        record.events
    );
    // One denial per attempt through the proxy, none for the direct ones (they go nowhere).
    assert_eq!(denied.len(), 6, "{denied:#?}");
    for (host, why) in [
        (other.as_str(), "IP address"),
        (bridged.as_str(), "IP address"),
        ("169.254.169.254", "IP address"),
        ("", "no credential named `NOT_BOUND`"),
    ] {
        assert!(
            denied.iter().any(|d| d.contains(host) && d.contains(why)),
            "no denial of {host} ({why}) in {denied:#?}"
        );
    }
    assert_eq!(
        denied
            .iter()
            .filter(|d| d.contains("no credential named `NOT_BOUND`"))
            .count(),
        2,
        "{denied:#?}"
    );
    aac_tests::event_registry::assert_registered(&record.events);
    assert_eq!(containers_of_run(&record.report.run_id).await, 0);
}
