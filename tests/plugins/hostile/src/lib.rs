//! The prompt says what to try. Probes (`read-passwd`, `write-file`, `socket <addr>`,
//! `http <addr>`, `env`) complete with a message saying what they observed: `denied: …` when the
//! host held, `LEAK: …` when it did not. The others misbehave until the host ends the session:
//! `flood`, `big-event` and `bad-json` (both then complete), `grow`, `spin`, `panic`, `huge-string`.
//! `ok N` is a well-behaved turn emitting N events.

use aac_sdk::{Backend, CommandInfo, RunInfo, TurnResult, events};

// Asks for two variables; the tests grant only one of them.
aac_sdk::declare_capabilities!(br#"{"env": ["PATH", "HOME"]}"#);

struct Hostile;

impl Backend for Hostile {
    fn start(_run: RunInfo) -> Result<Self, String> {
        Ok(Hostile)
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
                aac_sdk::bindings::backend::aac::plugin::events::emit(&aac_sdk::Event {
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
