//! Which role may call which endpoint. An admin token may call every endpoint; a runner token
//! the runner's side of the protocol; a client token the client's side; both read runs, commands
//! and blobs. A runner reads a run's stored results only with the lease token of the run it holds
//! (checked by the handler, see `results_routes`).

use axum::http::Method;

use crate::tokens::Role;

/// Who may call an endpoint besides an admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Runner,
    Client,
    Both,
}

impl Side {
    pub(super) fn allows(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Admin)
                | (Side::Both, _)
                | (Side::Runner, Role::Runner)
                | (Side::Client, Role::Client)
        )
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Side::Runner => "runner or admin",
            Side::Client => "client or admin",
            Side::Both => "any",
        }
    }
}

/// The side of `method path` (a path under `/v1`); unknown endpoints are `Both` (they answer 404
/// or 405 anyway).
pub(super) fn side(method: &Method, path: &str) -> Side {
    let segments: Vec<&str> = path
        .trim_start_matches("/v1")
        .trim_matches('/')
        .split('/')
        .collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    match segments.as_slice() {
        ["runners"] if post => Side::Runner,
        ["runners"] => Side::Client,
        ["claim-next"] => Side::Runner,
        ["runs"] if post => Side::Client,
        ["runs", _] if *method == Method::DELETE => Side::Client,
        ["runs", _, "claim" | "heartbeat" | "status" | "release"] => Side::Runner,
        ["runs", _, "cancel"] => Side::Client,
        ["runs", _, "commands"] if post => Side::Client,
        ["runs", _, "commands", _, "ack" | "status" | "result"] => Side::Runner,
        ["runs", _, "commands", _, "cancel"] => Side::Client,
        ["runs", _, "events"] if get => Side::Client,
        ["runs", _, "events"] => Side::Runner,
        ["runs", _, "result" | "files"] => Side::Client,
        ["runs", _, "files", ..] => Side::Client,
        _ => Side::Both,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_of_the_protocol() {
        let post = Method::POST;
        let get = Method::GET;
        for (method, path, wanted) in [
            (&post, "/v1/runs", Side::Client),
            (&get, "/v1/runs", Side::Both),
            (&post, "/v1/runners", Side::Runner),
            (&get, "/v1/runners", Side::Client),
            (&post, "/v1/claim-next", Side::Runner),
            (&post, "/v1/runs/r1/claim", Side::Runner),
            (&post, "/v1/runs/r1/heartbeat", Side::Runner),
            (&post, "/v1/runs/r1/cancel", Side::Client),
            (&Method::DELETE, "/v1/runs/r1", Side::Client),
            (&get, "/v1/runs/r1", Side::Both),
            (&post, "/v1/runs/r1/commands", Side::Client),
            (&get, "/v1/runs/r1/commands", Side::Both),
            (&post, "/v1/runs/r1/commands/c1/ack", Side::Runner),
            (&post, "/v1/runs/r1/commands/c1/cancel", Side::Client),
            (&Method::PUT, "/v1/runs/r1/commands/c1/result", Side::Runner),
            (&post, "/v1/runs/r1/events", Side::Runner),
            (&get, "/v1/runs/r1/events", Side::Client),
            (&get, "/v1/runs/r1/result", Side::Client),
            (&get, "/v1/runs/r1/results", Side::Both),
            (&get, "/v1/runs/r1/files/a/b.txt", Side::Client),
            (&Method::PUT, "/v1/blobs/abc", Side::Both),
        ] {
            assert_eq!(side(method, path), wanted, "{method} {path}");
        }
        assert!(Side::Runner.allows(Role::Admin));
        assert!(!Side::Runner.allows(Role::Client));
        assert!(!Side::Client.allows(Role::Runner));
        assert!(Side::Both.allows(Role::Runner));
    }
}
