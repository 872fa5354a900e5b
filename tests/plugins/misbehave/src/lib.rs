//! The prompt says how to misbehave: `trap` panics, `spin` loops forever, `hog` allocates without
//! bound, `bad-usage` emits an `agent.usage` event whose payload breaks the registry's schema,
//! `ok` completes. Each failure must end only this session.

use aac_sdk::{Backend, CommandInfo, RunInfo, TurnResult, events};

struct Misbehave;

impl Backend for Misbehave {
    fn start(_run: RunInfo) -> Result<Self, aac_sdk::StartError> {
        Ok(Misbehave)
    }

    fn run_turn(&mut self, command: CommandInfo) -> TurnResult {
        events::emit_message(&format!("about to {}", command.prompt));
        match command.prompt.as_str() {
            "trap" => panic!("misbehaving on purpose"),
            "spin" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "bad-usage" => {
                // Token counts as a string and a negative number: the registry wants integers ≥ 0.
                events::emit_raw(
                    "agent.usage",
                    r#"{"input_tokens":"many","output_tokens":-1}"#.into(),
                );
                TurnResult::completed()
            }
            _ => TurnResult::completed(),
        }
    }
}

aac_sdk::export_backend!(Misbehave);
