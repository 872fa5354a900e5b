//! The egress boundary's cost (`cargo xtask bench`), side by side with its baseline:
//!
//! * `egress-download/direct` vs `egress-download/proxy`: 200 MiB from a loopback HTTP server,
//!   read straight from it vs through a CONNECT tunnel of the egress proxy (what a sandbox's
//!   download costs the host; the proxy's side of it);
//! * `sandbox-download/bridge-direct` vs `sandbox-download/egress-proxy`: the same 500 MiB as a
//!   sandbox sees it — busybox `wget` in a container on Docker's bridge straight from a server on
//!   the bridge's address, vs in an egress sandbox through the proxy (`http_proxy`, the server on
//!   loopback behind an allowed name), timed inside the sandbox (`/proc/uptime`, 10 ms steps, so
//!   the exec's own start stays out);
//! * `egress-start/cold-none` and `egress-start/cold-bridge` vs `egress-start/cold-egress` and
//!   `egress-start/ready-egress`: a cold sandbox and its first process (`true`), without network,
//!   on the default bridge, with its own internal network, proxy and firewall rules made on the
//!   spot, and with one of two networks kept ready (as a serving runner does). Removal is outside
//!   the timed part, and each start waits until the ready networks are refilled and the last
//!   sandbox's network is torn down (both happen in the background).
//! * `gateway-turn/direct-bridge` vs `gateway-turn/egress-gateway`: one real Codex turn (a message)
//!   against the mock Responses API, the key in the sandbox and the mock on the bridge, vs an
//!   egress sandbox whose key the credential gateway adds (mock on loopback). Timed: the run's
//!   *second* turn (from the first turn's last event to the second's, the runner's clock), so the
//!   sandbox's start — and the egress one's network, proxy and firewall rules, `egress-start`'s
//!   question — stay out of it and what differs is the model request's route.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_egress::{AllowRule, Allowlist, EgressProxy, EventSink, ProxyOptions, Resolver};
use aac_host::local::{DEFAULT_IMAGE, sandbox_user};
use aac_host::sandbox::pool::prepare_workspace;
use aac_host::sandbox::{
    EgressSpec, ExecSpec, NetworkMode, ProcessHandle, ProcessLimits, SandboxDriver, SandboxSpec,
};
use aac_tests::upstream::Upstream;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SIZE: u64 = 200 << 20;

/// Sends `GET /bytes/SIZE` on `stream` (already connected to the upstream) and reads it all.
async fn download(mut stream: TcpStream) -> u64 {
    stream
        .write_all(format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total > SIZE);
    total
}

fn egress_download(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (upstream, proxy, _events) = runtime.block_on(async {
        let upstream = Upstream::start("127.0.0.1:0").await;
        let (events, receiver) = EventSink::channel();
        let rule = AllowRule::new("localhost", Some(upstream.addr.port()), true).unwrap();
        let proxy = EgressProxy::start(ProxyOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow: Arc::new(Allowlist::new(vec![rule])),
            events,
            resolver: Resolver::default(),
            credentials: Arc::default(),
        })
        .await
        .unwrap();
        (upstream, proxy, receiver)
    });
    let mut group = c.benchmark_group("egress-download");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(SIZE));
    group.bench_function("direct", |b| {
        b.iter(|| {
            runtime.block_on(async {
                download(TcpStream::connect(upstream.addr).await.unwrap()).await
            })
        })
    });
    group.bench_function("proxy", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
                let port = upstream.addr.port();
                stream
                    .write_all(format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut reply = [0u8; 39];
                stream.read_exact(&mut reply).await.unwrap();
                assert!(reply.starts_with(b"HTTP/1.1 200"));
                download(stream).await
            })
        })
    });
    group.finish();
}

/// Bytes of each sandbox download: big enough that `/proc/uptime`'s 10 ms steps are noise.
const SANDBOX_SIZE: u64 = 500 << 20;

/// Runs `wget` of `url` in `sandbox`; returns how long it took, as the sandbox's clock saw it.
async fn timed_wget(sandbox: &Arc<dyn aac_host::sandbox::Sandbox>, url: &str) -> Duration {
    let script = format!(
        "read a _ < /proc/uptime; wget -q -O /dev/null '{url}' || exit 9; read b _ < /proc/uptime; \
         echo \"$a $b\""
    );
    let spec = ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script],
        ..ExecSpec::default()
    };
    let raw = sandbox.exec(spec.clone()).await.unwrap();
    let mut process =
        ProcessHandle::start(raw, &spec, ProcessLimits::default(), Default::default());
    let mut out = Vec::new();
    while let Some(chunk) = process.read().await {
        out.extend_from_slice(&chunk.data);
    }
    let exit = process.wait().await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(exit.code, Some(0), "wget of {url} failed: {text}");
    let times: Vec<f64> = text
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    Duration::from_secs_f64(times[1] - times[0])
}

fn sandbox_download(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let driver = runtime.block_on(async {
        aac_tests::docker()
            .await
            .with_runner_id("bench-sandbox-download")
    });
    let (on_bridge, on_loopback) = runtime.block_on(async {
        let bridge = aac_tests::mock_http::sandbox_host_address().await;
        (
            Upstream::start(&format!("{bridge}:0")).await,
            Upstream::start("127.0.0.1:0").await,
        )
    });
    let root = tempfile::tempdir().unwrap();
    let mut bridge = SandboxSpec::new(DEFAULT_IMAGE, root.path().join("ws"), sandbox_user());
    prepare_workspace(&bridge.workspace_host_dir, &bridge.user).unwrap();
    bridge.network = NetworkMode::Bridge;
    let port = on_loopback.addr.port();
    let mut egress = bridge.clone();
    egress.network = NetworkMode::Egress;
    egress.egress = Some(EgressSpec {
        allow: Arc::new(Allowlist::new(vec![
            AllowRule::new("upstream.test", Some(port), true).unwrap(),
        ])),
        events: EventSink::channel().0,
        resolver: Resolver::default()
            .with_fixed("upstream.test", vec!["127.0.0.1".parse().unwrap()]),
        credentials: Arc::default(),
    });
    let direct_url = format!("http://{}/bytes/{SANDBOX_SIZE}", on_bridge.addr);
    let proxied_url = format!("http://upstream.test:{port}/bytes/{SANDBOX_SIZE}");
    let sandboxes = runtime.block_on(async {
        (
            driver.open(&bridge).await.unwrap(),
            driver.open(&egress).await.unwrap(),
        )
    });
    let mut group = c.benchmark_group("sandbox-download");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(SANDBOX_SIZE));
    for (name, sandbox, url) in [
        ("bridge-direct", &sandboxes.0, &direct_url),
        ("egress-proxy", &sandboxes.1, &proxied_url),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += timed_wget(sandbox, url).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        sandboxes.0.remove().await.unwrap();
        sandboxes.1.remove().await.unwrap();
        driver.shutdown_egress().await;
    });
}

async fn run_true(sandbox: &Arc<dyn aac_host::sandbox::Sandbox>) {
    let spec = ExecSpec {
        argv: vec!["true".into()],
        ..ExecSpec::default()
    };
    let raw = sandbox.exec(spec.clone()).await.unwrap();
    let mut process =
        ProcessHandle::start(raw, &spec, ProcessLimits::default(), Default::default());
    assert_eq!(process.wait().await.code, Some(0));
}

fn egress_start(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cold = runtime.block_on(async {
        aac_tests::docker()
            .await
            .with_runner_id("bench-egress-start")
    });
    let ready = runtime.block_on(async { cold.clone().with_ready_egress_networks(2) });
    let root = tempfile::tempdir().unwrap();
    let none = SandboxSpec::new(DEFAULT_IMAGE, root.path().join("ws"), sandbox_user());
    prepare_workspace(&none.workspace_host_dir, &none.user).unwrap();
    let mut bridge = none.clone();
    bridge.network = NetworkMode::Bridge;
    let mut egress = none.clone();
    egress.network = NetworkMode::Egress;
    egress.egress = Some(EgressSpec {
        allow: Arc::default(),
        events: EventSink::channel().0,
        resolver: Resolver::default(),
        credentials: Arc::default(),
    });

    let mut group = c.benchmark_group("egress-start");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(30));
    for (name, spec, driver) in [
        ("cold-none", &none, &cold),
        ("cold-bridge", &bridge, &cold),
        ("cold-egress", &egress, &cold),
        ("ready-egress", &egress, &ready),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        driver.egress_settled().await;
                        let started = Instant::now();
                        let sandbox = driver.open(spec).await.unwrap();
                        run_true(&sandbox).await;
                        total += started.elapsed();
                        sandbox.remove().await.unwrap();
                    }
                    total
                })
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        cold.shutdown_egress().await;
        ready.shutdown_egress().await;
    });
}

fn gateway_turn(c: &mut Criterion) {
    use aac_egress::{Credential, Credentials, HeaderTemplate, Upstream};
    use aac_tests::mock_http::MockServer;
    use aac_tests::{load_agent_plugin, mock_openai, run_agent_turns_in, run_agent_turns_with};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    const IMAGE: &str = "aac/codex:0.169.0";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (agent, bridge_mock, loopback_mock) = runtime.block_on(async {
        let bridge_mock = mock_openai::start().await;
        bridge_mock.set_fallback(mock_openai::text("hello"));
        let loopback_mock =
            MockServer::start("127.0.0.1".parse().unwrap(), &[mock_openai::RESPONSES_PATH]).await;
        loopback_mock.set_fallback(mock_openai::text("hello"));
        (load_agent_plugin("codex").await, bridge_mock, loopback_mock)
    });
    let provider = |base_url: Option<String>| {
        json!({
            "model": "mock-model",
            "provider": { "base_url": base_url, "env_key": "OPENAI_API_KEY",
                "request_max_retries": 0, "stream_max_retries": 0 },
            "env": {},
            "idle_timeout_ms": 120_000,
        })
    };
    let credential = Credential::new(
        "OPENAI_API_KEY",
        Upstream::parse(&format!("{}/v1", loopback_mock.base_url())).unwrap(),
        &HeaderTemplate::parse("Authorization: Bearer {secret}").unwrap(),
        "sk-bench",
        true,
    )
    .unwrap();
    let egress_profile = aac_host::runner::RunProfile {
        image: IMAGE.into(),
        network: NetworkMode::Egress,
        pull_policy: aac_host::sandbox::PullPolicy::Never,
        credentials: Arc::new(Credentials::new([credential])),
        ..agent.profile()
    };
    let mut group = c.benchmark_group("gateway-turn");
    group
        .sampling_mode(criterion::SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    const PROMPTS: &[&str] = &["say hello", "say hello again"];
    group.bench_function("direct-bridge", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    runtime.block_on(async {
                        let workspace = tempfile::tempdir().unwrap();
                        let mut config = provider(Some(format!("{}/v1", bridge_mock.base_url())));
                        config["env"] = json!({ "OPENAI_API_KEY": "sk-bench" });
                        let run = run_agent_turns_with(
                            &agent,
                            IMAGE,
                            config,
                            workspace.path(),
                            PROMPTS,
                            CancellationToken::new(),
                        )
                        .await;
                        second_turn(&run)
                    })
                })
                .sum()
        })
    });
    group.bench_function("egress-gateway", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    runtime.block_on(async {
                        let workspace = tempfile::tempdir().unwrap();
                        let run = Box::pin(run_agent_turns_in(
                            &agent,
                            egress_profile.clone(),
                            provider(None),
                            workspace.path(),
                            PROMPTS,
                            CancellationToken::new(),
                        ))
                        .await;
                        second_turn(&run)
                    })
                })
                .sum()
        })
    });
    group.finish();
}

/// The second turn of a two-turn run: from the first turn's last event to the second's (both
/// stamped by the runner as the plugin emitted them; the second command waits in the queue, so it
/// starts as soon as the first ends).
fn second_turn(run: &aac_tests::AgentRun) -> Duration {
    for outcome in &run.outcomes {
        assert_eq!(
            outcome.status,
            aac_host::outcome::TerminalStatus::Completed,
            "{outcome:?}"
        );
    }
    let last_emitted = |n: usize| {
        run.events_of(n)
            .iter()
            .filter_map(|event| event.emitted_at_ms)
            .max()
            .unwrap_or_else(|| panic!("command {n} has no stamped events"))
    };
    Duration::from_millis(last_emitted(2) - last_emitted(1))
}

criterion_group!(
    benches,
    egress_download,
    sandbox_download,
    egress_start,
    gateway_turn
);
criterion_main!(benches);
