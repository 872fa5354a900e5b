//! A backend written against the frozen `aac:plugin@0.1.0` contract (host/plugin-host/wit-0.1.0),
//! as a plugin built before 0.2.0 was. Each prompt runs as `sh -c` in the workspace; output lines
//! become `output.*` events and the end a `process.exited` event whose `kill_reason` is the 0.1.0
//! string. A `config_json` containing `refuse` makes `start` fail with a bare string (0.1.0 has no
//! failure kind); a prompt starting with `timeout:` runs with a 300 ms timeout.

// Only a wasm component: natively (workspace builds) the crate is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    path: "../../../host/plugin-host/wit-0.1.0",
    world: "aac:plugin/backend@0.1.0",
});

use aac::plugin::log::{Level, log};
use aac::plugin::sandbox::{ExecRequest, OutputStream, StdinMode, exec};
use aac::plugin::types::{
    CommandInfo, Event, FailureKind, PluginInfo, RunInfo, TerminalStatus, TurnResult,
};
use exports::aac::plugin::adapter::{Guest, GuestSession, Session};

struct Legacy;

struct LegacySession {
    workspace: String,
}

impl Guest for Legacy {
    type Session = LegacySession;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "test-legacy-v0-1".into(),
            version: "0.1.0".into(),
            description: "built against aac:plugin@0.1.0".into(),
        }
    }
}

fn emit(kind: &str, payload_json: String) {
    aac::plugin::events::emit(&Event {
        kind: kind.into(),
        payload_json,
    });
}

/// A JSON string literal (no serde in a plugin this small).
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn result(status: TerminalStatus, kind: Option<FailureKind>, message: String) -> TurnResult {
    TurnResult {
        status,
        failure_kind: kind,
        message: Some(message),
        thread_id: None,
        turn_id: None,
    }
}

impl GuestSession for LegacySession {
    fn start(run: RunInfo) -> Result<Session, String> {
        if run.config_json.contains("refuse") {
            return Err("this 0.1.0 backend refuses its config".into());
        }
        log(Level::Info, "a 0.1.0 session starts");
        Ok(Session::new(LegacySession {
            workspace: run.workspace_dir,
        }))
    }

    fn run_turn(&self, command: CommandInfo) -> TurnResult {
        let (script, timeout_ms) = match command.prompt.strip_prefix("timeout:") {
            Some(script) => (script.to_string(), Some(300)),
            None => (command.prompt.clone(), None),
        };
        let request = ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            env: vec![],
            cwd: Some(self.workspace.clone()),
            stdin: StdinMode::Null,
            timeout_ms,
            idle_timeout_ms: None,
        };
        let process = match exec(&request) {
            Ok(process) => process,
            Err(err) => {
                return result(
                    TerminalStatus::Failed,
                    Some(FailureKind::AgentError),
                    format!("{err:?}"),
                );
            }
        };
        while let Some(chunk) = process.read() {
            let kind = match chunk.stream {
                OutputStream::Stdout => "output.stdout",
                OutputStream::Stderr => "output.stderr",
            };
            let text = String::from_utf8_lossy(&chunk.data);
            emit(kind, format!("{{\"text\":{}}}", quoted(&text)));
        }
        let status = process.wait();
        let code = status.code.map_or("null".into(), |c| c.to_string());
        let reason = status.kill_reason.as_deref().map_or("null".into(), quoted);
        emit(
            "process.exited",
            format!(
                "{{\"code\":{code},\"killed\":{},\"kill_reason\":{reason},\"oom_killed\":{}}}",
                status.killed, status.oom_killed
            ),
        );
        match (status.code, status.kill_reason) {
            (Some(0), None) => TurnResult {
                status: TerminalStatus::Completed,
                failure_kind: None,
                message: None,
                thread_id: None,
                turn_id: None,
            },
            (_, Some(reason)) => result(
                TerminalStatus::Failed,
                Some(FailureKind::TurnTimeout),
                format!("killed: {reason}"),
            ),
            (code, None) => result(
                TerminalStatus::Failed,
                Some(FailureKind::AgentError),
                format!("exited with {code:?}"),
            ),
        }
    }

    fn close(&self) {}
}

export!(Legacy);
