//! How the CLI shows events, outcomes and inspections: human-readable, or JSON lines with `--json`.

use std::io::Write;

use anyhow::Result;
use tokio::sync::mpsc;

use crate::local::LocalTurnReport;
use crate::outcome::{TerminalStatus, TurnEvent};
use crate::plugin::Inspection;
use crate::plugin::text::terminal_safe;
use crate::runner::RunReport;

/// Prints the turn's events as they arrive and returns them when `keep` (for a transcript).
/// Output is written through one buffer, flushed whenever no further event is waiting: a
/// flood costs a write per batch, not per line, and a quiet turn still shows each line at once.
pub async fn print_events(
    mut events: mpsc::Receiver<TurnEvent>,
    json: bool,
    keep: bool,
) -> Vec<TurnEvent> {
    let mut kept = Vec::new();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout());
    let mut err = std::io::BufWriter::with_capacity(16 << 10, std::io::stderr());
    while let Some(event) = events.recv().await {
        // A closed stdout (`| head`) must not end the turn: the rest is discarded.
        let _ = print_event(&event, json, &mut out, &mut err);
        if keep {
            kept.push(event);
        }
        if events.is_empty() {
            let _ = err.flush();
            let _ = out.flush();
        }
    }
    let _ = err.flush();
    let _ = out.flush();
    kept
}

fn print_event(
    event: &TurnEvent,
    json: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, event)?;
        return out.write_all(b"\n");
    }
    // Every string here came from a plugin: no control sequence reaches the terminal. (The
    // payload's JSON form escapes control characters already.)
    let text = event
        .payload
        .get("text")
        .and_then(|t| t.as_str())
        .map(terminal_safe);
    match (event.kind.as_str(), text) {
        ("output.stdout", Some(text)) => writeln!(out, "{text}"),
        ("output.stderr", Some(text)) => {
            // Interleaved with stdout on a terminal: keep their order.
            out.flush()?;
            writeln!(err, "{text}")?;
            err.flush()
        }
        ("agent.message", Some(text)) => writeln!(out, "» {text}"),
        (kind, _) => {
            out.flush()?;
            writeln!(err, "· {} {}", terminal_safe(kind), event.payload)?;
            err.flush()
        }
    }
}

/// Exit codes: 0 completed, 1 failed, 3 blocked, 130 cancelled.
pub fn exit_code(status: TerminalStatus) -> std::process::ExitCode {
    std::process::ExitCode::from(match status {
        TerminalStatus::Completed => 0,
        TerminalStatus::Failed => 1,
        TerminalStatus::Blocked => 3,
        TerminalStatus::Cancelled => 130,
    })
}

/// Queued runs no runtime of this runner serves (pool mode's summary), if any.
pub fn print_unserved(unserved: &std::collections::BTreeMap<String, usize>, json: bool) {
    if unserved.is_empty() {
        return;
    }
    if json {
        let line = serde_json::json!({ "kind": "runs.unserved", "backends": unserved });
        println!("{line}");
    } else {
        eprintln!(
            "still queued, for backends this runner has no runtime for: {}",
            crate::runner::describe_unserved(unserved)
        );
    }
}

/// How a run this runner worked on ended.
pub fn print_run_report(report: &RunReport, json: bool) {
    if json {
        let line = serde_json::json!({
            "kind": "run.result",
            "run_id": report.run_id,
            "outcome": report.outcome,
            "commands": report.commands.iter().map(|(id, outcome)| serde_json::json!({"id": id, "outcome": outcome})).collect::<Vec<_>>(),
            "events_sent": report.events.sent,
            "events_dropped": report.events.dropped,
            "reported": report.reported,
        });
        println!("{line}");
        return;
    }
    eprintln!(
        "run {} {} — {} command(s), {} event(s) sent{}",
        report.run_id,
        describe(&report.outcome),
        report.commands.len(),
        report.events.sent,
        if report.reported {
            ""
        } else {
            ", status NOT accepted by the manager"
        }
    );
}

/// `failed (agent-error): message`.
fn describe(outcome: &crate::outcome::TurnOutcome) -> String {
    let kind = outcome
        .failure_kind
        .map(|kind| format!(" ({kind})"))
        .unwrap_or_default();
    let message = outcome
        .message
        .as_deref()
        .map(|m| format!(": {}", terminal_safe(m)))
        .unwrap_or_default();
    format!("{}{kind}{message}", outcome.status)
}

pub fn print_outcome(report: &LocalTurnReport, json: bool) {
    if json {
        let line = serde_json::json!({
            "kind": "turn.result",
            "run_id": report.run_id,
            "workspace": report.workspace,
            "outcome": report.outcome,
            "result": report.result,
        });
        println!("{line}");
        return;
    }
    let outcome = &report.outcome;
    let mark = match outcome.status {
        TerminalStatus::Completed => "✓",
        TerminalStatus::Cancelled => "■",
        _ => "✗",
    };
    eprintln!("{mark} turn {}", describe(outcome));
    eprintln!("  workspace: {}", report.workspace.display());
    if let Some(result) = &report.result {
        let cut = if result.truncated { " (truncated)" } else { "" };
        eprintln!(
            "  changes: {} added, {} modified, {} deleted; diff {} bytes{cut}",
            result.added, result.modified, result.deleted, result.diff_bytes
        );
    }
}

pub fn print_inspection(inspection: &Inspection, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(inspection)?);
        return Ok(());
    }
    let shape = &inspection.shape;
    println!("plugin:      {}", inspection.path.display());
    if let (Some(name), Some(version)) = (&inspection.name, &inspection.version) {
        println!(
            "name:        {} {}",
            terminal_safe(name),
            terminal_safe(version)
        );
    }
    if let Some(description) = inspection.description.as_deref().filter(|d| !d.is_empty()) {
        println!("description: {}", terminal_safe(description));
    }
    println!("world:       aac:plugin/{}", shape.world.as_str());
    let served = match shape.contract {
        crate::plugin::ContractVersion::V0_2 => "the current contract",
        crate::plugin::ContractVersion::V0_1 => "served through the 0.1.0 adapter",
    };
    println!("contract:    aac:plugin@{} ({served})", shape.wit_version);
    println!("size:        {} bytes", shape.size_bytes);
    let cache = match &inspection.cache_artifact {
        Some(path) => format!(
            "{} ({})",
            match inspection.cache {
                crate::plugin::CacheState::Hit => "compiled artifact cached",
                _ => "not cached before this inspection",
            },
            path.display()
        ),
        None => "cache disabled".to_string(),
    };
    println!("cache:       {cache}");
    println!("imports:");
    for import in &shape.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &shape.exports {
        println!("  {export}");
    }
    let caps = &inspection.capabilities;
    println!("capabilities:");
    println!("  declared:  {}", show_caps(Some(&caps.declared)));
    println!("  granted:   {}", show_caps(caps.granted.as_ref()));
    println!("  effective: {}", show_caps(caps.effective.as_ref()));
    if let Some(integrity) = &inspection.integrity {
        println!("integrity:");
        println!(
            "  sha256:    {}{}",
            integrity.sha256,
            if integrity.pinned { " (pinned)" } else { "" }
        );
        let signature = match (&integrity.signature_file, &integrity.signed_by) {
            (_, Some(key)) => format!("valid, by {key}"),
            (Some(file), None) => {
                format!("{} present, no trusted keys to check it", file.display())
            }
            (None, None) => "none".into(),
        };
        println!("  signature: {signature}");
    }
    Ok(())
}

fn show_caps(caps: Option<&crate::plugin::Capabilities>) -> String {
    let Some(caps) = caps else {
        return "(give --config to see)".into();
    };
    if caps.is_empty() {
        return "nothing".into();
    }
    let mut parts = Vec::new();
    if !caps.http.is_empty() {
        parts.push(format!("http [{}]", caps.http.join(", ")));
    }
    if !caps.env.is_empty() {
        parts.push(format!("env [{}]", caps.env.join(", ")));
    }
    parts.join("; ")
}

/// What `--config` (and `--runtime`) add to an inspection: the grants that apply and the integrity
/// checks of that runtime (or of `[bundles]` for a materializer).
pub fn apply_config(
    inspection: Inspection,
    config: &std::path::Path,
    runtime: Option<&str>,
) -> Result<Inspection> {
    let config = crate::config::HostConfig::load(config)?;
    let (grants, integrity) = match (runtime, inspection.shape.world) {
        (Some(selector), _) => {
            let profile = config.select(selector)?.profile;
            (profile.grants.clone(), profile.integrity())
        }
        (None, crate::plugin::World::Materializer) => match &config.bundles {
            Some(bundles) => (bundles.grants.clone(), bundles.integrity()),
            None => anyhow::bail!(
                "{} has no [bundles] table to take grants from",
                config.source.display()
            ),
        },
        (None, crate::plugin::World::Backend) => {
            anyhow::bail!("give --runtime NAME: the grants of a backend are per runtime")
        }
    };
    inspection.with_grants(&grants).with_integrity(&integrity)
}
