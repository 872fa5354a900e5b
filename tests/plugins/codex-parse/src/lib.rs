//! Benchmark plugin: each turn's prompt is a recorded Codex JSONL stream, mapped to events by the
//! very same source file the codex plugin compiles (`plugins/codex/src/jsonl.rs`, included by path:
//! depending on the codex crate would link its exports twice). The payload decides the work:
//!
//! * `{}`: map every line to events (payloads as JSON text), as the codex plugin does before it
//!   emits; one `bench.parsed` event reports the counts;
//! * `{"emit": true}`: also emit every event through the host, exactly as the codex plugin does.

#[path = "../../../../plugins/codex/src/jsonl.rs"]
#[allow(dead_code)]
mod jsonl;

use aac_sdk::{Backend, CommandInfo, RunInfo, TurnResult, events};

struct CodexParse;

impl Backend for CodexParse {
    fn start(_run: RunInfo) -> Result<Self, aac_sdk::StartError> {
        Ok(CodexParse)
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        let emit = command.payload_json.contains("\"emit\":true");
        let mut mapper = jsonl::Mapper::new();
        let mut mapped = Vec::new();
        let (mut lines, mut count, mut bytes) = (0u64, 0u64, 0u64);
        for line in command.prompt.lines() {
            lines += 1;
            mapper.map_line(line, &mut mapped);
            for event in mapped.drain(..) {
                count += 1;
                bytes += event.payload.len() as u64;
                if emit {
                    events::emit_raw(event.kind, event.payload);
                }
            }
        }
        events::emit(
            "bench.parsed",
            &serde_json::json!({ "lines": lines, "events": count, "bytes": bytes }),
        );
        TurnResult::completed()
    }
}

aac_sdk::export_backend!(CodexParse);
