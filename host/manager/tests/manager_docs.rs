//! docs/openapi.yaml and docs/protocol.md agree with the code: every documented endpoint exists on
//! the embedded manager (with auth), and every status, failure kind and error code is documented.

use std::sync::Arc;

use aac_manager::outcome::{FailureKind, TerminalStatus};
use aac_manager::protocol::{CommandStatus, RunStatus, error_code};
use aac_manager::server::start;
use aac_manager::tokens::{Role, TokenSet};
use aac_manager::{Manager, ManagerConfig, ManualClock};

const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");
const PROTOCOL: &str = include_str!("../../../docs/protocol.md");

/// `(METHOD, /v1/path)` for every operation of the OpenAPI file, read from its layout: a path at
/// two spaces of indent, its methods at four.
fn documented_operations() -> Vec<(String, String)> {
    let mut ops = Vec::new();
    let mut path = None;
    for line in OPENAPI.lines() {
        if let Some(p) = line.strip_prefix("  /v1/") {
            path = Some(format!("/v1/{}", p.trim_end_matches(':')));
        } else if line.starts_with("  /") {
            // The unauthenticated probes (`/healthz`…) are checked on their own.
            path = None;
        } else if !line.starts_with("  ") && !line.is_empty() {
            path = None;
        } else if let Some(p) = &path {
            for m in ["get", "post", "put", "delete"] {
                if line == format!("    {m}:") {
                    ops.push((m.to_uppercase(), p.clone()));
                }
            }
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_endpoint_exists_and_needs_the_token() {
    let ops = documented_operations();
    assert_eq!(ops.len(), 28, "{ops:?}");
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let config = ManagerConfig::new("t").with_clock(Arc::new(clock));
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for (method, path) in &ops {
        let url = format!(
            "{}{}",
            handle.url(),
            path.replace("{run}", "r1")
                .replace("{cmd}", "c1")
                .replace("{sha256}", &"0".repeat(64))
                .replace("{path}", "src/main.rs")
        );
        let without = http
            .request(method.parse().unwrap(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(without.status().as_u16(), 401, "{method} {path}");
        let with = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth("t")
            .header("x-lease-token", "l")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = with.status().as_u16();
        let body = with.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path} is not routed: {body}"
        );
    }
    handle.shutdown().await.unwrap();
}

/// The roles each operation lists as `x-aac-roles`, in the order of [`documented_operations`].
fn documented_roles() -> Vec<Vec<String>> {
    OPENAPI
        .lines()
        .filter_map(|line| line.strip_prefix("      x-aac-roles: ["))
        .map(|roles| {
            roles
                .trim_end_matches(']')
                .split(',')
                .map(|r| r.trim().to_owned())
                .collect()
        })
        .collect()
}

/// Every operation's `x-aac-roles` is what the manager enforces: a runner or client token gets
/// 403 exactly where its role is not listed (and an admin token never).
#[tokio::test]
async fn documented_roles_are_the_enforced_ones() {
    let ops = documented_operations();
    let roles = documented_roles();
    assert_eq!(ops.len(), roles.len(), "one x-aac-roles per operation");
    let mut tokens = TokenSet::default();
    tokens.add(Role::Runner, "r").unwrap();
    tokens.add(Role::Client, "c").unwrap();
    tokens.add(Role::Admin, "a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ManagerConfig::with_tokens(tokens);
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for ((method, path), roles) in ops.iter().zip(&roles) {
        let url = format!(
            "{}{}",
            handle.url(),
            path.replace("{run}", "r1")
                .replace("{cmd}", "c1")
                .replace("{sha256}", &"0".repeat(64))
                .replace("{path}", "src/main.rs")
        );
        for (token, role) in [("r", "runner"), ("c", "client"), ("a", "admin")] {
            let reply = http
                .request(method.parse().unwrap(), &url)
                .bearer_auth(token)
                .header("x-lease-token", "l")
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap();
            assert_eq!(
                status == 403,
                !roles.iter().any(|r| r == role),
                "{role} token on {method} {path} (documented {roles:?}): {status} {body}"
            );
        }
    }
    handle.shutdown().await.unwrap();
}

#[test]
fn taxonomy_and_error_codes_are_documented() {
    let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
    let mut words: Vec<String> = Vec::new();
    for s in RunStatus::ALL {
        words.push(json(serde_json::to_value(s).unwrap()));
    }
    words.push(json(serde_json::to_value(CommandStatus::Acked).unwrap()));
    words.push(json(serde_json::to_value(TerminalStatus::Blocked).unwrap()));
    for k in [
        FailureKind::AgentError,
        FailureKind::ModelError,
        FailureKind::AuthError,
        FailureKind::TurnTimeout,
        FailureKind::BackendCrashed,
        FailureKind::BackendTimeout,
        FailureKind::ResourceExhausted,
        FailureKind::OomKilled,
        FailureKind::SandboxLost,
        FailureKind::ImageUnavailable,
        FailureKind::ResourceBundle,
        FailureKind::LeaseLost,
        FailureKind::SchemaInvalid,
        FailureKind::HostError,
        FailureKind::ConfigInvalid,
    ] {
        words.push(json(serde_json::to_value(k).unwrap()));
    }
    for c in [
        error_code::UNAUTHORIZED,
        error_code::FORBIDDEN,
        error_code::BAD_REQUEST,
        error_code::NOT_FOUND,
        error_code::METHOD_NOT_ALLOWED,
        error_code::LEASE_CONFLICT,
        error_code::LEASE_LOST,
        error_code::RUN_TERMINAL,
        error_code::ID_CONFLICT,
        error_code::COMMAND_STATE,
        error_code::RUN_NOT_FINISHED,
        error_code::PAYLOAD_TOO_LARGE,
        error_code::UNSUPPORTED_MEDIA_TYPE,
        error_code::INTERNAL,
    ] {
        words.push(c.to_owned());
    }
    for w in words {
        assert!(
            OPENAPI.contains(&w),
            "docs/openapi.yaml does not mention {w}"
        );
        assert!(
            PROTOCOL.contains(&format!("`{w}`")),
            "docs/protocol.md does not mention `{w}`"
        );
    }
}

#[tokio::test]
async fn the_documented_probes_answer_without_a_token() {
    for path in ["/healthz", "/readyz"] {
        assert!(
            OPENAPI.contains(&format!("\n  {path}:\n    get:")),
            "{path} is documented"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = ManagerConfig::new("t");
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    for path in ["/healthz", "/readyz"] {
        let answer = reqwest::get(format!("{}{path}", handle.url()))
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
    }
}
