//! Hostile plugins: each attempt is contained with the right failure kind (or simply finds nothing
//! granted), ends only its own session, and healthy sessions and a bundle materialization running
//! at the same time in the same host complete.

use std::net::TcpListener;
use std::sync::Arc;

use aac_host::config::Grants;
use aac_host::outcome::{FailureKind, TerminalStatus, TurnEvent, TurnOutcome};
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{BackendPlugin, Integrity, MaterializeOptions, PluginHost};
use aac_tests::bundle::{archive, manifest_for, many_files, save};
use aac_tests::{plugin, sandboxless_session, test_host};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn hostile(host: &Arc<PluginHost>, grants: &Grants) -> Arc<BackendPlugin> {
    let plugin = host
        .load_backend(&plugin("test-hostile"))
        .await
        .expect("the hostile plugin loads");
    Arc::new(plugin.with_grants(grants))
}

/// One turn in a fresh session; returns its outcome and every event it emitted.
async fn turn(plugin: Arc<BackendPlugin>, prompt: &str) -> (TurnOutcome, Vec<TurnEvent>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut options = sandboxless_session(&format!("run-{prompt}"));
    options.events = tx;
    let mut session = plugin.open_session(options).await.expect("session opens");
    let command = CommandInfo {
        command_id: "cmd-1".into(),
        sequence: 1,
        prompt: prompt.into(),
        payload_json: "{}".into(),
    };
    let outcome = session.run_turn(command, CancellationToken::new()).await;
    session.close().await;
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    (outcome, events)
}

fn observed(outcome: &TurnOutcome) -> String {
    assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
    outcome.message.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_no_host_files_sockets_http_or_env_unless_granted() {
    let host = test_host(None);
    let plugin = hostile(&host, &Grants::default()).await;

    let passwd = observed(&turn(plugin.clone(), "read-passwd").await.0);
    assert!(passwd.starts_with("denied: "), "{passwd}");
    let write = observed(&turn(plugin.clone(), "write-file").await.0);
    assert!(write.starts_with("denied: "), "{write}");
    assert!(!std::path::Path::new("/tmp/aac-hostile-was-here").exists());

    // A real listener on loopback: the plugin can reach it neither by socket nor over wasi:http.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = observed(&turn(plugin.clone(), &format!("socket {addr}")).await.0);
    assert!(socket.starts_with("denied: "), "{socket}");
    let http = observed(&turn(plugin.clone(), &format!("http {addr}")).await.0);
    assert!(
        http.starts_with("denied: ") && http.contains("HttpRequestDenied"),
        "{http}"
    );
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
        "no connection may have reached the listener: {accepted:?}"
    );

    let env = observed(&turn(plugin, "env").await.0);
    assert_eq!(env, "env: []");
}

#[tokio::test]
async fn env_is_what_the_plugin_declares_and_the_operator_grants() {
    assert!(std::env::var_os("PATH").is_some() && std::env::var_os("HOME").is_some());
    let host = test_host(None);
    // Declared: PATH and HOME. Granted: PATH and USER. Effective: PATH only.
    let grants = Grants {
        http: vec![],
        env: vec!["PATH".into(), "USER".into()],
    };
    let plugin = hostile(&host, &grants).await;
    assert_eq!(plugin.declared().env, ["PATH", "HOME"]);
    assert_eq!(plugin.effective().env, ["PATH"]);
    let env = observed(&turn(plugin, "env").await.0);
    assert_eq!(env, "env: [PATH]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sessions_end_alone_with_the_right_failure_kind_while_healthy_ones_complete() {
    let host = test_host(None);
    let plugin = hostile(&host, &Grants::default()).await;

    // A bundle materialized at the same time, in the same host.
    let dir = tempfile::tempdir().unwrap();
    let entries = many_files(300);
    let bundle = aac_host::runner::session::plugin_bundle(&save(
        dir.path(),
        "b.tar",
        &archive(&manifest_for(&entries), &entries),
    ));
    let materialize = {
        let host = host.clone();
        let workspace = dir.path().join("ws");
        tokio::spawn(async move {
            let bundle_plugin = host
                .load_materializer(&aac_tests::plugin("bundle"), &Integrity::default())
                .await
                .unwrap();
            bundle_plugin
                .materialize(&bundle, &workspace, &MaterializeOptions::default())
                .await
        })
    };

    let modes = [
        "flood",
        "big-event",
        "bad-json",
        "grow",
        "spin",
        "panic",
        "huge-string",
        "ok 200",
    ];
    let runs: Vec<_> = modes
        .iter()
        .map(|mode| tokio::spawn(turn(plugin.clone(), mode)))
        .collect();
    let mut results = Vec::new();
    for run in runs {
        results.push(run.await.expect("the session task did not panic"));
    }
    let [flood, big, bad_json, grow, spin, panic, huge, ok] = <[_; 8]>::try_from(results).unwrap();

    let expect = |(outcome, _): &(TurnOutcome, Vec<TurnEvent>), kind: FailureKind, text: &str| {
        assert_eq!(outcome.status, TerminalStatus::Failed, "{outcome:?}");
        assert_eq!(outcome.failure_kind, Some(kind), "{outcome:?}");
        let message = outcome.message.as_deref().unwrap_or_default();
        assert!(message.contains("plugin `test-hostile` 0.1.0"), "{message}");
        assert!(message.contains(text), "expected {text:?} in {message}");
    };
    expect(&flood, FailureKind::ResourceExhausted, "event limit");
    let last = flood.1.last().expect("events");
    assert_eq!(
        last.kind, "backend.failed",
        "the flood ends with the host's own event"
    );
    assert_eq!(last.payload["failure_kind"], "resource-exhausted");
    // An oversized event is cut to the limit with a marker, and the session goes on.
    assert_eq!(observed(&big.0), "big event sent");
    let cut: Vec<_> = big.1.iter().filter(|e| e.kind == "big").collect();
    assert_eq!(cut.len(), 1, "{:?}", big.1);
    assert_eq!(cut[0].payload["truncated"], true);
    assert_eq!(cut[0].payload["original_bytes"], (1u64 << 20) + 11);
    assert!(cut[0].payload.to_string().len() <= 262_144);
    assert!(cut[0].payload["blob"].as_str().unwrap().len() > 200_000);
    expect(&grow, FailureKind::ResourceExhausted, "memory limit");
    expect(&spin, FailureKind::BackendTimeout, "CPU deadline");
    expect(
        &panic,
        FailureKind::BackendCrashed,
        "hostile plugin panicking on purpose",
    );
    expect(
        &huge,
        FailureKind::ResourceExhausted,
        "returned a string of 8388608 bytes",
    );

    // Malformed JSON is contained: the session goes on and the payload is kept as a string.
    assert_eq!(observed(&bad_json.0), "survived");
    let bad: Vec<_> = bad_json.1.iter().filter(|e| e.kind == "bad").collect();
    assert_eq!(bad.len(), 2);
    assert!(
        bad.iter().all(|e| e.payload["invalid_json"].is_string()),
        "{bad:?}"
    );

    // The healthy session saw none of it.
    assert_eq!(observed(&ok.0), "ok: 200 events");
    let ticks: Vec<_> = ok.1.iter().filter(|e| e.kind == "tick").collect();
    assert_eq!(ticks.len(), 200);
    assert!(ticks.windows(2).all(|w| w[0].seq < w[1].seq));

    let summary = materialize
        .await
        .unwrap()
        .expect("the bundle was materialized");
    assert_eq!(summary.files, 300 + 100 + 1);

    // The plugin itself is fine: a new session works.
    assert_eq!(observed(&turn(plugin, "ok 3").await.0), "ok: 3 events");
}

/// A panic is reported with its own message whatever came before it: a megabyte of stderr chatter
/// (only the last bytes are kept, and writing never fails) or a memory grow the plugin handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_reported_as_a_crash_with_its_message_whatever_came_before() {
    let host = test_host(None);
    let plugin = hostile(&host, &Grants::default()).await;
    for (mode, text) in [
        ("chatty", "the real panic after the chatter"),
        (
            "grow-then-panic",
            "an unrelated panic after a handled grow (refused: true)",
        ),
    ] {
        let (outcome, _) = turn(plugin.clone(), mode).await;
        assert_eq!(
            outcome.failure_kind,
            Some(FailureKind::BackendCrashed),
            "{mode}: {outcome:?}"
        );
        let message = outcome.message.unwrap_or_default();
        assert!(message.contains(text), "{mode}: {message}");
        assert!(
            message.matches("wasm backtrace:").count() <= 1,
            "{mode}: the backtrace at most once: {message}"
        );
    }
    // A forged process handle names the cause.
    let (outcome, _) = turn(plugin.clone(), "forge").await;
    assert_eq!(outcome.failure_kind, Some(FailureKind::BackendCrashed));
    let message = outcome.message.unwrap_or_default();
    assert!(
        message.contains("unknown handle index 4242")
            && message.contains("never gave out or that was already dropped"),
        "{message}"
    );
    assert!(message.matches("wasm backtrace:").count() <= 1, "{message}");

    // A 8 MiB `start` error is cut to the result bound with a marker.
    let mut options = aac_tests::sandboxless_session("run-huge-start-error");
    options.events = mpsc::unbounded_channel().0;
    let refused = plugin
        .open_session(options)
        .await
        .err()
        .expect("start fails");
    // The plugin refused with a typed config error (contract 0.2): the run's kind says so.
    assert_eq!(refused.failure_kind, Some(FailureKind::ConfigInvalid));
    let message = refused.message.unwrap_or_default();
    assert!(message.len() < 70 << 10, "{} bytes", message.len());
    assert!(
        message.contains("refused to start the session: eee") && message.ends_with("more bytes]"),
        "{}",
        &message[message.len().saturating_sub(200)..]
    );

    // Running out of memory is still what it is.
    let (outcome, _) = turn(plugin, "grow").await;
    assert_eq!(outcome.failure_kind, Some(FailureKind::ResourceExhausted));
}

/// Host-only failure kinds are not believed from a plugin; event kinds outside the grammar are
/// kept under the host's own kind.
#[tokio::test]
async fn a_plugin_cannot_claim_host_only_kinds_nor_emit_odd_event_kinds() {
    let host = test_host(None);
    let plugin = hostile(&host, &Grants::default()).await;
    for claimed in ["lease-lost", "sandbox-lost", "resource-exhausted"] {
        let (outcome, _) = turn(plugin.clone(), &format!("claim {claimed}")).await;
        assert_eq!(
            outcome.failure_kind,
            Some(FailureKind::BackendCrashed),
            "{outcome:?}"
        );
        let message = outcome.message.unwrap_or_default();
        assert!(
            message.contains(&format!(
                "reported failure kind `{claimed}`, which only the host can report"
            )) && message.contains(&format!("the plugin claims {claimed}")),
            "{message}"
        );
    }
    let (outcome, _) = turn(plugin.clone(), "claim agent-error").await;
    assert_eq!(outcome.failure_kind, Some(FailureKind::AgentError));

    let (_, events) = turn(plugin, "escapes").await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["plugin.invalid_event", "plugin.invalid_event", "ok.kind"]
    );
    assert_eq!(events[0].payload["kind"], "\u{1b}[2J");
    assert!(
        events[1].payload["error"]
            .as_str()
            .unwrap()
            .contains("empty")
    );
}

/// A materializer sees only its staging directory: writes beside it and reads of host files fail,
/// a spinning one is stopped, and on every failure the workspace is left as it was.
#[tokio::test]
async fn a_hostile_materializer_is_confined_to_the_workspace() {
    let host = test_host(None);
    let touch = host
        .load_materializer(&plugin("test-touch-materializer"), &Integrity::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let bundle = |location: &str| aac_host::plugin::Bundle {
        // `http`: no local archive is opened; the test plugin fetches nothing.
        kind: "http".into(),
        location: location.into(),
        sha256: None,
        size: None,
    };
    let options = MaterializeOptions::default();
    let untouched = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ws"], "nothing beside the workspace");
        assert_eq!(std::fs::read_dir(&workspace).unwrap().count(), 0);
    };

    // A kind outside the contract's `bundle-source` is refused by the host before the plugin runs.
    let unknown = touch
        .materialize(
            &aac_host::plugin::Bundle {
                kind: "ftp".into(),
                ..bundle("ftp://x/y.tar")
            },
            &workspace,
            &options,
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, FailureKind::ResourceBundle);
    assert!(
        unknown.message.contains("unknown bundle kind `ftp`"),
        "{}",
        unknown.message
    );
    untouched();

    let escape = touch
        .materialize(&bundle("hostile:escape"), &workspace, &options)
        .await
        .unwrap_err();
    assert_eq!(escape.kind, FailureKind::ResourceBundle);
    assert_eq!(
        escape.message.matches("denied").count(),
        3,
        "{}",
        escape.message
    );
    assert!(!escape.message.contains("LEAK"), "{}", escape.message);
    untouched();

    let partial = touch
        .materialize(&bundle("hostile:partial"), &workspace, &options)
        .await
        .unwrap_err();
    assert_eq!(partial.entry.as_deref(), Some("second"));
    untouched();

    let huge = touch
        .materialize(&bundle("hostile:huge-error"), &workspace, &options)
        .await
        .unwrap_err();
    assert_eq!(
        huge.kind,
        FailureKind::ResourceExhausted,
        "{}",
        &huge.message[..200.min(huge.message.len())]
    );
    assert!(
        huge.message.contains("returned a string of 8388608 bytes"),
        "{}",
        &huge.message[..200.min(huge.message.len())]
    );
    untouched();

    // Inside by their text, outside once resolved: `y` would read the host's /etc/passwd.
    let chain = touch
        .materialize(&bundle("hostile:link-chain"), &workspace, &options)
        .await
        .unwrap_err();
    assert_eq!(chain.kind, FailureKind::ResourceBundle, "{chain:?}");
    assert_eq!(chain.entry.as_deref(), Some("y"), "{chain:?}");
    assert!(
        chain.message.contains("leaves the workspace")
            && chain.message.contains("resolves above the workspace"),
        "{chain:?}"
    );
    untouched();

    let spin = touch
        .materialize(&bundle("hostile:spin"), &workspace, &options)
        .await
        .unwrap_err();
    assert_eq!(spin.kind, FailureKind::BackendTimeout, "{spin:?}");
    assert!(spin.message.contains("CPU deadline"), "{spin:?}");
    untouched();

    // The same plugin, behaving, works.
    let summary = touch
        .materialize(&bundle("fine"), &workspace, &options)
        .await
        .unwrap();
    assert_eq!(summary.files, 1);
    assert_eq!(
        std::fs::read_to_string(workspace.join(".materialized")).unwrap(),
        "fine"
    );
}

/// A spinning plugin is paused once its burst is spent, so it takes at most its share of a core:
/// its CPU budget still ends it, but only after the pauses that share imposes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_plugin_is_held_to_its_share_of_a_core() {
    use aac_host::plugin::{PluginHostConfig, PluginLimits};
    use std::time::{Duration, Instant};
    let limits = PluginLimits {
        turn_cpu: Duration::from_millis(600),
        cpu_burst: Duration::from_millis(100),
        cpu_share: 0.2,
        ..PluginLimits::default()
    };
    let host = PluginHost::new(PluginHostConfig {
        cache_dir: None,
        limits,
    })
    .unwrap();
    let plugin = hostile(&host, &Grants::default()).await;
    let started = Instant::now();
    let (outcome, _) = turn(plugin, "spin").await;
    assert_eq!(
        outcome.failure_kind,
        Some(FailureKind::BackendTimeout),
        "{outcome:?}"
    );
    // 100 ms of burst, then 500 ms of CPU at a fifth of a core: at least 2 s of pauses. (A bound
    // by construction: pauses are sleeps; a slow machine only makes the turn longer.)
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the spinner ran {took:?}: it was not held to its share"
    );
}
