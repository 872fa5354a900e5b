//! The prompt says what to try. Probes (`read-passwd`, `write-file`, `socket <addr>`,
//! `http <addr>`, `env`) complete with a message saying what they observed: `denied: …` when the
//! host held, `LEAK: …` when it did not. The others misbehave until the host ends the session:
//! `flood`, `big-event` and `bad-json` (both then complete), `grow`, `spin`, `panic`, `huge-string`.
//! `ok N` is a well-behaved turn emitting N events. Waiting: `block` waits forever in a WASI
//! pollable, `sleep N` sleeps N times 250 ms (waiting, not CPU) and completes; a run id or backend
//! configuration containing `block-start` (or `block-close`) makes `start` (or `close`) wait forever.
//! `spawn N` holds N processes (`sleep 30`) and says how many started; `huge-argv` execs with an
//! 8 MiB argument. `claim KIND` fails with that failure kind; `escapes` emits events with invalid kinds and fails
//! with terminal escapes in its message; `chatty` and `grow-then-panic` panic after a megabyte of
//! stderr or a handled memory refusal.

use aac_sdk::{Backend, CommandInfo, FailureKind, RunInfo, TurnResult, events};

// Asks for two variables; the tests grant only one of them.
aac_sdk::declare_capabilities!(env: ["PATH", "HOME"]);

struct Hostile {
    block_close: bool,
}

/// Waits on a WASI clock pollable that never becomes ready: no CPU is used.
fn wait_forever() -> ! {
    loop {
        wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX).block();
    }
}

impl Backend for Hostile {
    fn start(run: RunInfo) -> Result<Self, aac_sdk::StartError> {
        let asks = |what: &str| run.run_id.contains(what) || run.config_json.contains(what);
        if asks("block-start") {
            wait_forever();
        }
        if asks("huge-start-error") {
            return Err(aac_sdk::StartError::config("e".repeat(8 << 20)));
        }
        Ok(Hostile {
            block_close: asks("block-close"),
        })
    }

    fn close(&mut self) {
        if self.block_close {
            wait_forever();
        }
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let (mode, arg) = command
            .prompt
            .split_once(' ')
            .unwrap_or((command.prompt.as_str(), ""));
        let observed = match mode {
            "read-passwd" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => format!("LEAK: {}", text.lines().next().unwrap_or_default()),
                Err(err) => format!("denied: {err}"),
            },
            "write-file" => match std::fs::write("/tmp/aac-hostile-was-here", "x") {
                Ok(()) => "LEAK: wrote /tmp/aac-hostile-was-here".into(),
                Err(err) => format!("denied: {err}"),
            },
            "socket" => match std::net::TcpStream::connect(arg) {
                Ok(_) => format!("LEAK: connected to {arg}"),
                Err(err) => format!("denied: {err}"),
            },
            "http" => http_get(arg),
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                format!("env: [{}]", vars.join(","))
            }
            "flood" => loop {
                events::emit_raw("flood", "{\"n\":1}".to_string());
            },
            "big-event" => {
                // Straight to the host, past the SDK's own bound: the host must cut it.
                let payload = format!("{{\"blob\":\"{}\"}}", "x".repeat(1 << 20));
                aac_sdk::__private::bindings::backend::aac::plugin::events::emit(&aac_sdk::Event {
                    kind: "big".into(),
                    payload_json: payload,
                });
                "big event sent".into()
            }
            "bad-json" => {
                events::emit_raw("bad", "{\"unterminated\": ".to_string());
                events::emit_raw("bad", "\u{0}\u{1}not json at all".to_string());
                "survived".into()
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 4 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
                }
            }
            "panic" => panic!("hostile plugin panicking on purpose"),
            "chatty" => {
                // ~1 MiB of stderr, far past what the host keeps, then the real failure.
                for i in 0..16_000 {
                    eprintln!("chatter line {i} of a plugin that talks too much on stderr");
                }
                panic!("the real panic after the chatter");
            }
            "grow-then-panic" => {
                let mut hoard: Vec<u8> = Vec::new();
                let refused = hoard.try_reserve(1 << 30).is_err();
                std::hint::black_box(&hoard);
                panic!("an unrelated panic after a handled grow (refused: {refused})");
            }
            "block" => wait_forever(),
            "forge" => {
                // A process handle the host never gave out.
                // SAFETY: deliberately wrong; the host must contain it.
                let forged = unsafe {
                    aac_sdk::__private::bindings::backend::aac::plugin::sandbox::Process::from_handle(4242)
                };
                format!(
                    "LEAK: read {:?}",
                    forged.read().map(|chunk| chunk.data.len())
                )
            }
            "spawn" => {
                // Holds every process it starts: the host must cap them.
                let n: usize = arg.parse().unwrap_or(1);
                let mut held = Vec::new();
                let mut refusal = String::from("none");
                let began = wasip2::clocks::monotonic_clock::now();
                for _ in 0..n {
                    match aac_sdk::Command::new("sleep").arg("30").spawn() {
                        Ok(process) => held.push(process),
                        Err(err) => {
                            refusal = format!("{err:?}");
                            break;
                        }
                    }
                }
                let started = held.len();
                let took_ms = (wasip2::clocks::monotonic_clock::now() - began) / 1_000_000;
                for process in &held {
                    process.kill();
                }
                format!("started {started} in {took_ms} ms; refused: {refusal}")
            }
            "run-in" => {
                // `run-in DIR PROGRAM ARGS…`: what the process said and how it ended.
                let mut words = arg.split(' ');
                let dir = words.next().unwrap_or("/");
                let argv: Vec<&str> = words.collect();
                let spawned = aac_sdk::Command::new(argv[0])
                    .args(argv[1..].iter().copied())
                    .cwd(dir)
                    .spawn();
                match spawned {
                    Err(err) => format!("refused: {err:?}"),
                    Ok(mut process) => {
                        let mut said = String::new();
                        while let Some(chunk) = process.read_chunk() {
                            said.push_str(&String::from_utf8_lossy(&chunk.data));
                        }
                        format!("exit {:?}: {said}", process.wait().code)
                    }
                }
            }
            "huge-argv" => {
                let arg = "a".repeat(8 << 20);
                match aac_sdk::Command::new("echo").arg(arg).spawn() {
                    Ok(_) => "LEAK: an 8 MiB argv was accepted".into(),
                    Err(err) => format!("refused: {err:?}"),
                }
            }
            "claim" => {
                let kind = match arg {
                    "lease-lost" => FailureKind::LeaseLost,
                    "sandbox-lost" => FailureKind::SandboxLost,
                    "resource-exhausted" => FailureKind::ResourceExhausted,
                    _ => FailureKind::AgentError,
                };
                return TurnResult::failed(kind, format!("the plugin claims {arg}"));
            }
            "escapes" => {
                events::emit_raw("\u{1b}[2J", "{}".to_string());
                events::emit_raw("", "{}".to_string());
                events::emit("ok.kind", &1);
                return TurnResult::failed(
                    FailureKind::AgentError,
                    "\u{1b}]0;pwned\u{7}\u{1b}[31mred",
                );
            }
            "sleep" => {
                let n: u32 = arg.parse().unwrap_or(1);
                for _ in 0..n {
                    wasip2::clocks::monotonic_clock::subscribe_duration(250_000_000).block();
                }
                format!("slept {n} times")
            }
            "huge-string" => return TurnResult::completed().with_message("y".repeat(8 << 20)),
            "ok" => {
                let n: u32 = arg.parse().unwrap_or(10);
                for i in 0..n {
                    events::emit("tick", &i);
                }
                format!("ok: {n} events")
            }
            other => format!("unknown mode {other}"),
        };
        TurnResult::completed().with_message(observed)
    }
}

/// A GET through wasi:http, which a backend is never granted by the tests.
fn http_get(authority: &str) -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    match outgoing_handler::handle(request, None) {
        Err(err) => format!("denied: {err:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("LEAK: HTTP {}", response.status()),
                Some(Ok(Err(err))) => format!("denied: {err:?}"),
                other => format!("denied: {other:?}"),
            }
        }
    }
}

aac_sdk::export_backend!(Hostile);
