//! Every error of the manager is a JSON error body, whoever produced it (a handler, axum's own
//! rejections, routing); a body that is not JSON is refused with 415; the `dropped` count of an
//! event batch saturates instead of wrapping. Real HTTP on loopback, a real redb file.

use std::sync::Arc;

use aac_manager::protocol::{AppendEvents, RegisterRunner};
use aac_manager::server::start;
use aac_manager::{Manager, ManagerClient, ManagerConfig, ManagerHandle, ManualClock};

const TOKEN: &str = "errors-token";

async fn manager() -> (tempfile::TempDir, ManagerHandle, ManagerClient) {
    let dir = tempfile::tempdir().unwrap();
    let config = ManagerConfig::new(TOKEN).with_clock(Arc::new(ManualClock::default()));
    let handle = start(Manager::open(dir.path().join("m.redb"), config).unwrap())
        .await
        .unwrap();
    let client = ManagerClient::new(handle.url(), TOKEN).unwrap();
    (dir, handle, client)
}

fn create(id: &str) -> aac_manager::protocol::CreateRun {
    serde_json::from_value(serde_json::json!({"id": id, "backend": "shell"})).unwrap()
}

/// Sends a raw request; the status and the body, which must be a JSON error body.
async fn raw(
    handle: &ManagerHandle,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", handle.url()))
        .bearer_auth(TOKEN);
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: {status} is not JSON ({e}): {text:?}"));
    if status >= 400 {
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
        assert!(json["error"].is_string(), "{method} {path}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {json}"
        );
    }
    (status, json)
}

#[tokio::test]
async fn errors_are_json_everywhere() {
    let (_dir, handle, client) = manager().await;
    client.create_run(create("r1")).await.unwrap();

    // A path segment that is not UTF-8 once percent-decoded.
    let (status, body) = raw(&handle, "GET", "/v1/runs/%ff", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad-request")),
        "{body}"
    );
    let (status, body) = raw(&handle, "GET", "/v1/runs/r1/commands/%ff%fe", None, None).await;
    assert_eq!(status, 400, "{body}");

    // A body over the limit: 413, named, and the limit stated.
    let big = vec![b' '; 3 * 1024 * 1024];
    let (status, body) = raw(
        &handle,
        "POST",
        "/v1/runs/r1/events",
        Some("application/json"),
        Some(big),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload-too-large")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("2097152"),
        "{body}"
    );

    let (status, body) = raw(&handle, "GET", "/v1/no-such-thing", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not-found")),
        "{body}"
    );
    let (status, body) = raw(&handle, "GET", "/elsewhere", None, None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = raw(&handle, "PUT", "/v1/runs", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method-not-allowed")),
        "{body}"
    );
    let (status, body) = raw(&handle, "DELETE", "/v1/runs/r1/commands", None, None).await;
    assert_eq!(status, 405, "{body}");

    // A malformed body names the field at fault.
    let (status, body) = raw(
        &handle,
        "POST",
        "/v1/runs",
        Some("application/json"),
        Some(br#"{"backend": 7}"#.to_vec()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`backend`"),
        "{body}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let (_dir, handle, client) = manager().await;
    let json = br#"{"id": "r2", "backend": "shell"}"#.to_vec();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let (status, body) = raw(
            &handle,
            "POST",
            "/v1/runs",
            content_type,
            Some(json.clone()),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (415, Some("unsupported-media-type")),
            "{content_type:?}: {body}"
        );
    }
    // Nothing was created by the refused requests.
    assert!(client.list_runs(None).await.unwrap().is_empty());

    // JSON with parameters is JSON; a request without a body needs no content type.
    let (status, body) = raw(
        &handle,
        "POST",
        "/v1/runs",
        Some("Application/JSON; charset=utf-8"),
        Some(json),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = raw(&handle, "POST", "/v1/runs/r2/cancel", None, None).await;
    assert_eq!(status, 200, "{body}");

    // Auth is still checked first: no token, wrong type → 401.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/runs", handle.url()))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropped_counts_saturate_and_are_validated() {
    let (_dir, handle, client) = manager().await;
    client.create_run(create("r3")).await.unwrap();
    let runner = client
        .register_runner(RegisterRunner::default())
        .await
        .unwrap();
    let lease = client
        .claim("r3", &runner.id, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let batch = AppendEvents {
        events: Vec::new(),
        dropped: u64::MAX,
    };
    for _ in 0..2 {
        let reply = client
            .append_events("r3", &lease.lease_token, &batch)
            .await
            .unwrap();
        assert_eq!(reply.dropped_events, u64::MAX);
    }
    assert_eq!(client.get_run("r3").await.unwrap().dropped_events, u64::MAX);

    for bad in ["-1", "18446744073709551616", "1.5", "\"many\""] {
        let (status, body) = raw_with_lease(&handle, &lease.lease_token, bad).await;
        assert_eq!(status, 400, "dropped = {bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("`dropped`"),
            "dropped = {bad}: {body}"
        );
    }
    assert_eq!(client.get_run("r3").await.unwrap().dropped_events, u64::MAX);
    handle.shutdown().await.unwrap();
}

async fn raw_with_lease(
    handle: &ManagerHandle,
    lease: &str,
    dropped: &str,
) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/runs/r3/events", handle.url()))
        .bearer_auth(TOKEN)
        .header("x-lease-token", lease)
        .header("content-type", "application/json")
        .body(format!(r#"{{"events": [], "dropped": {dropped}}}"#))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}
