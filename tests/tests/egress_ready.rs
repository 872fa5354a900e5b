//! Egress networks kept ready (`[egress] ready_networks`): a sandbox takes one whose network and
//! firewall rules exist before it, the stock refills in the background, a used network goes with
//! its rules after the run, shutdown removes the ready ones, and a killed host's ready networks
//! are removed — rules and all — by the next host's reaper. (That a ready network is as closed as
//! a fresh one is `egress.rs` and `egress_hostile.rs`: their turns run on ready networks.)

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_host::local::{DEFAULT_IMAGE, sandbox_user};
use aac_host::sandbox::pool::prepare_workspace;
use aac_host::sandbox::{EgressSpec, NetworkMode, SandboxDriver, SandboxSpec};
use aac_tests::runs::{TOKEN, TestManager};
use aac_tests::{aac_host_binary, docker, plugin};
use bollard::query_parameters::{InspectContainerOptions, ListNetworksOptions};

/// The networks labelled with runner `runner`.
async fn networks_of(runner: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("dev.aac-host.runner={runner}")],
    )]);
    let mut names: Vec<String> = docker()
        .await
        .client()
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|network| network.name)
        .collect();
    names.sort();
    names
}

/// The host firewall's rules (IPv4 and IPv6) tagged with network `name`.
fn rules_of(name: &str) -> Vec<String> {
    let tag = format!("aac-egress:{name}");
    ["iptables", "ip6tables"]
        .iter()
        .flat_map(|tool| {
            let listing = Command::new(tool)
                .args(["-w", "-S", "INPUT"])
                .output()
                .expect("the firewall tool runs");
            String::from_utf8_lossy(&listing.stdout)
                .lines()
                .filter(|line| line.contains(&tag))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn egress_spec(workspace: &std::path::Path) -> SandboxSpec {
    let mut spec = SandboxSpec::new(DEFAULT_IMAGE, workspace.to_path_buf(), sandbox_user());
    prepare_workspace(&spec.workspace_host_dir, &spec.user).unwrap();
    spec.network = NetworkMode::Egress;
    spec.egress = Some(EgressSpec {
        allow: Arc::default(),
        events: aac_egress::EventSink::channel().0,
        resolver: aac_egress::Resolver::default(),
        credentials: Arc::default(),
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_takes_a_ready_network_and_the_used_one_goes_with_its_rules() {
    let runner = format!("egress-ready-{}", std::process::id());
    let driver = docker()
        .await
        .with_runner_id(runner.clone())
        .with_ready_egress_networks(2);
    driver.egress_settled().await;
    let ready = networks_of(&runner).await;
    assert_eq!(ready.len(), 2, "{ready:?}");
    for name in &ready {
        // IPv4: the proxy's ACCEPT and the DROP; IPv6: the DROP.
        assert_eq!(rules_of(name).len(), 3, "{name}: {:?}", rules_of(name));
    }

    let workspace = tempfile::tempdir().unwrap();
    let sandbox = driver
        .open(&egress_spec(&workspace.path().join("ws")))
        .await
        .unwrap();
    let inspected = driver
        .client()
        .inspect_container(sandbox.id(), None::<InspectContainerOptions>)
        .await
        .unwrap();
    let attached: Vec<String> = inspected
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default()
        .into_keys()
        .collect();
    assert_eq!(attached.len(), 1, "{attached:?}");
    let used = attached[0].clone();
    assert!(
        ready.contains(&used),
        "the sandbox is on {used}, not on a ready network ({ready:?})"
    );

    sandbox.remove().await.unwrap();
    driver.egress_settled().await;
    let now = networks_of(&runner).await;
    assert_eq!(now.len(), 2, "refilled to two: {now:?}");
    assert!(!now.contains(&used), "the used network is gone: {now:?}");
    assert!(rules_of(&used).is_empty(), "{:?}", rules_of(&used));

    driver.shutdown_egress().await;
    assert!(networks_of(&runner).await.is_empty());
    for name in now {
        assert!(rules_of(&name).is_empty(), "{name}: {:?}", rules_of(&name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_ready_networks_and_their_rules_are_gone_after_the_next_reap() {
    let manager = TestManager::start().await;
    let cache = tempfile::tempdir().unwrap();
    let runner = format!("egress-killed-{}", std::process::id());
    let mut child = Command::new(aac_host_binary())
        .args(["runner", "--plugin"])
        .arg(plugin("shell"))
        .args(["--manager-url", &manager.url(), "--max-runs", "1"])
        .args(["--runner-id", &runner, "--network", "egress"])
        .args(["--allow", "example.org"])
        .env("AAC_MANAGER_TOKEN", TOKEN)
        .env("AAC_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A runner serving an egress profile keeps two networks ready (the default).
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let names = networks_of(&runner).await;
        if names.len() == 2 && names.iter().all(|name| rules_of(name).len() == 3) {
            break names;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the runner never had two egress networks ready: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        networks_of(&runner).await,
        ready,
        "killed, nothing cleaned up"
    );

    docker().await.reap_orphans("another-host").await.unwrap();
    assert!(networks_of(&runner).await.is_empty());
    for name in ready {
        assert!(rules_of(&name).is_empty(), "{name}: {:?}", rules_of(&name));
    }
}
