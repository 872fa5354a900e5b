//! Agent backend benchmarks (`cargo xtask bench`), each side by side with its baseline:
//!
//! * `codex_parse/*`: a generated Codex JSONL stream (shaped like real `codex exec --json` output)
//!   mapped to events by the codex plugin's mapping code, inside wasm (the `test-codex-parse`
//!   plugin, built with the shipping `plugin` profile; with and without emitting every event to the
//!   host) vs the same source compiled natively;
//! * `codex_turn/*`: one real Codex CLI turn against the mock Responses API, through aac-host
//!   (hardened sandbox + plugin session + turn + removal) vs `docker run --rm` of the same
//!   `codex exec` command line.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aac_host::outcome::TerminalStatus;
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_host::plugin::{PluginHost, PluginHostConfig};
use aac_tests::{load_agent_plugin, mock_openai, run_agent_turns_with};
use codex_plugin::jsonl::Mapper;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CODEX_IMAGE: &str = "aac/codex:0.169.0";

/// A JSONL stream of `turns` turns, each with a command, its output, reasoning and a message.
fn codex_stream(turns: usize) -> String {
    let output = "line of command output, as Codex aggregates it\\n".repeat(8);
    let mut lines = vec![
        json!({"type": "thread.started", "thread_id": "01a20969-a635-70b1-b453-d6b882aefb9e"})
            .to_string(),
    ];
    for turn in 0..turns {
        let command = format!("/bin/sh -lc 'cargo test -p crate_{turn} -- --nocapture'");
        lines.push(r#"{"type":"turn.started"}"#.into());
        lines.push(format!(r#"{{"type":"item.completed","item":{{"id":"item_{turn}_0","type":"reasoning","text":"**Planning the change** I will run the tests of crate {turn} first, then read the failures and fix them one by one."}}}}"#));
        lines.push(format!(r#"{{"type":"item.started","item":{{"id":"item_{turn}_1","type":"command_execution","command":{},"aggregated_output":"","exit_code":null,"status":"in_progress"}}}}"#, json!(command)));
        lines.push(format!(r#"{{"type":"item.completed","item":{{"id":"item_{turn}_1","type":"command_execution","command":{},"aggregated_output":"{output}","exit_code":0,"status":"completed"}}}}"#, json!(command)));
        lines.push(format!(r#"{{"type":"item.completed","item":{{"id":"item_{turn}_2","type":"file_change","changes":[{{"path":"src/lib_{turn}.rs","kind":"update"}}],"status":"completed"}}}}"#));
        lines.push(format!(r#"{{"type":"item.completed","item":{{"id":"item_{turn}_3","type":"agent_message","text":"The tests of crate {turn} pass now. I changed src/lib_{turn}.rs so the parser keeps the trailing line."}}}}"#));
        lines.push(r#"{"type":"turn.completed","usage":{"input_tokens":24000,"cached_input_tokens":20000,"cache_write_input_tokens":0,"output_tokens":900,"reasoning_output_tokens":300}}"#.into());
    }
    lines.join("\n")
}

/// The native baseline: the same mapping the plugin does, no host around it.
fn parse_native(stream: &str) -> (u64, u64) {
    let mut mapper = Mapper::new();
    let mut mapped = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    for line in stream.lines() {
        mapper.map_line(line, &mut mapped);
        for event in mapped.drain(..) {
            count += 1;
            bytes += event.payload.len() as u64;
        }
    }
    (count, bytes)
}

fn codex_parse(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stream = codex_stream(3000);
    let host = PluginHost::new(PluginHostConfig::default()).unwrap();
    let plugin = runtime
        .block_on(host.load_backend(&aac_tests::plugin("test-codex-parse")))
        .unwrap();
    let mut session = runtime
        .block_on(plugin.open_session(aac_tests::sandboxless_session("bench")))
        .unwrap_or_else(|outcome| panic!("{outcome:?}"));
    let command = |payload: &str| CommandInfo {
        command_id: "bench".into(),
        sequence: 1,
        prompt: stream.clone(),
        payload_json: payload.into(),
    };

    // Criterion measures one side after the other; on a shared machine the load can change in
    // between. Alternating the two sides gives a ratio both saw under the same load.
    let (mut native, mut wasm) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let started = Instant::now();
        std::hint::black_box(parse_native(&stream));
        native.push(started.elapsed());
        let started = Instant::now();
        runtime.block_on(session.run_turn(command("{}"), CancellationToken::new()));
        wasm.push(started.elapsed());
    }
    native.sort();
    wasm.sort();
    eprintln!(
        "codex_parse interleaved x30: native min {:?} median {:?}; wasm min {:?} median {:?}; \
         wasm/native throughput: min {:.2}, median {:.2}",
        native[0],
        native[15],
        wasm[0],
        wasm[15],
        native[0].as_secs_f64() / wasm[0].as_secs_f64(),
        native[15].as_secs_f64() / wasm[15].as_secs_f64(),
    );

    let mut group = c.benchmark_group("codex_parse");
    group
        .throughput(Throughput::Bytes(stream.len() as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("native", |b| b.iter(|| parse_native(&stream)));
    for (name, payload) in [("wasm", "{}"), ("wasm+emit", r#"{"emit":true}"#)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome =
                    runtime.block_on(session.run_turn(command(payload), CancellationToken::new()));
                assert_eq!(outcome.status, TerminalStatus::Completed, "{outcome:?}");
            })
        });
    }
    group.finish();
}

fn codex_turn(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mock = runtime.block_on(mock_openai::start());
    mock.set_fallback(mock_openai::text("hi"));
    let config = json!({
        "model": "mock-model",
        "provider": {
            "base_url": format!("{}/v1", mock.base_url()),
            "env_key": "MOCK_API_KEY",
            "request_max_retries": 0,
            "stream_max_retries": 0,
        },
        "env": { "MOCK_API_KEY": "bench-key" },
    });
    let backend = Arc::new(runtime.block_on(load_agent_plugin("codex")));
    let workspace = tempfile::tempdir().unwrap();

    // The baseline runs the very command line the plugin builds.
    let settings = codex_plugin::settings::Settings::from_json(&config.to_string(), "{}").unwrap();
    let argv = settings.argv("say hi", None);
    let workspace_mount = format!("{}:/workspace", workspace.path().display());

    let mut group = c.benchmark_group("codex_turn");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("aac-host", |b| {
        b.to_async(&runtime).iter(|| async {
            let run = run_agent_turns_with(
                &backend,
                CODEX_IMAGE,
                config.clone(),
                workspace.path(),
                &["say hi"],
                CancellationToken::new(),
            )
            .await;
            assert_eq!(run.outcomes[0].status, TerminalStatus::Completed);
        })
    });
    group.bench_function("docker-run", |b| {
        b.iter(|| {
            let output = Command::new("docker")
                .args(["run", "--rm", "--network", "bridge", "--user", "1000:1000"])
                .args([
                    "-e",
                    "HOME=/tmp",
                    "-e",
                    "MOCK_API_KEY=bench-key",
                    "-w",
                    "/workspace",
                ])
                .args(["-v", &workspace_mount, CODEX_IMAGE])
                .args(&argv)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("turn.completed"),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        })
    });
    group.finish();
}

criterion_group!(benches, codex_parse, codex_turn);
criterion_main!(benches);
