//! In debug and test builds the host checks every well-known event against the registry
//! (`wit/events.schema.json`): a payload that breaks its kind's schema is logged as a warning,
//! naming the plugin, the kind and the field (never the value), and counted. It never fails the
//! turn, and the event is delivered as the plugin sent it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use aac_host::outcome::TerminalStatus;
use aac_host::plugin::bindings::backend::aac::plugin::types::CommandInfo;
use aac_tests::{plugin, sandboxless_session, test_host};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::util::SubscriberInitExt;

/// Everything the subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn command(id: &str, prompt: &str) -> CommandInfo {
    CommandInfo {
        command_id: id.into(),
        sequence: 1,
        prompt: prompt.into(),
        payload_json: "{}".into(),
    }
}

#[tokio::test]
async fn a_bad_agent_usage_payload_is_warned_about_and_counted() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _guard = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish()
        .set_default();

    let host = test_host(None);
    let backend = host.load_backend(&plugin("test-misbehave")).await.unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut options = sandboxless_session("run-bad-usage");
    options.events = tx;
    let mut session = backend.open_session(options).await.ok().unwrap();

    // A well-formed turn (an `agent.message`) breaks nothing.
    let outcome = session
        .run_turn(command("c1", "ok"), CancellationToken::new())
        .await;
    assert_eq!(outcome.status, TerminalStatus::Completed);
    assert_eq!(session.schema_violations(), 0, "{}", logs.text());

    let outcome = session
        .run_turn(command("c2", "bad-usage"), CancellationToken::new())
        .await;
    assert_eq!(
        outcome.status,
        TerminalStatus::Completed,
        "a schema violation never fails the turn: {outcome:?}"
    );
    assert_eq!(session.schema_violations(), 1);

    let mut usage = None;
    while let Ok(event) = events.try_recv() {
        if event.kind == "agent.usage" {
            usage = Some(event.payload);
        }
    }
    assert_eq!(
        usage.expect("the event is delivered"),
        serde_json::json!({"input_tokens": "many", "output_tokens": -1}),
        "delivered as sent"
    );

    let text = logs.text();
    let warning = text
        .lines()
        .find(|line| line.contains("breaks its kind's schema"))
        .unwrap_or_else(|| panic!("no schema warning in:\n{text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("test-misbehave"),
        "names the plugin: {warning}"
    );
    assert!(
        warning.contains("kind=agent.usage"),
        "names the kind: {warning}"
    );
    assert!(
        warning.contains("$.input_tokens is a string, expected integer"),
        "names the field: {warning}"
    );
    assert!(!warning.contains("many"), "never the value: {warning}");
    session.close().await;
}
