//! `ManagerClient` against small axum servers of the test's own that misbehave on purpose:
//! garbage replies, 503s, 400s, nobody listening.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aac_manager::outcome::FailureKind;
use aac_manager::{ClientError, ManagerClient, RetryPolicy};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;

/// Serves `app` on loopback in the background; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        deadline: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

fn client(url: &str) -> ManagerClient {
    ManagerClient::new(url, "token")
        .unwrap()
        .with_retry(fast_retry())
}

const RUN_JSON: &str = r#"{"id":"run_1","status":"queued","backend":"shell","config":{},
    "created_at_ms":1,"updated_at_ms":1}"#;

#[tokio::test]
async fn garbage_replies_are_schema_invalid_with_a_clear_message() {
    let app = Router::new()
        .route("/v1/runs/{run}", get(|| async { "this is not json" }))
        .route(
            "/v1/runs/{run}/heartbeat",
            post(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"lease_expires_at_ms":"soon","run_status":"running","cancel_run":false,"cancel_commands":[]}"#,
                )
            }),
        )
        .route(
            "/v1/runs/{run}/events",
            get(|| async {
                concat!(
                    r#"{"seq":1,"command_id":"c","kind":"output","payload":{}}"#,
                    "\n",
                    r#"{"seq":"two"}"#,
                    "\n"
                )
            }),
        );
    let url = serve(app).await;
    let c = client(&url);

    let err = c.get_run("run_1").await.unwrap_err();
    assert!(matches!(err, ClientError::SchemaInvalid { .. }), "{err:?}");
    assert_eq!(err.failure_kind(), FailureKind::SchemaInvalid);
    let msg = err.to_string();
    assert!(
        msg.contains("GET /v1/runs/run_1"),
        "names the endpoint: {msg}"
    );
    assert!(msg.contains("schema-invalid"), "{msg}");
    assert!(msg.contains("Run"), "names the expected type: {msg}");
    assert!(msg.contains("expected"), "carries serde's message: {msg}");
    assert!(msg.contains("this is not json"), "shows the reply: {msg}");

    let err = c.heartbeat("run_1", "lease", None).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClientError::SchemaInvalid { .. }), "{msg}");
    assert!(msg.contains("POST /v1/runs/run_1/heartbeat"), "{msg}");
    assert!(msg.contains("HeartbeatReply"), "{msg}");
    assert!(
        msg.contains("invalid type"),
        "serde names what is wrong: {msg}"
    );

    let mut stream = c.follow_events("run_1", 0).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::SchemaInvalid { .. }), "{err}");
    assert!(err.to_string().contains("TurnEvent"), "{err}");
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn two_503s_with_retry_after_then_success_is_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/runs/{run}",
        get(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) < 2 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "0")],
                        "busy",
                    )
                        .into_response()
                } else {
                    ([(header::CONTENT_TYPE, "application/json")], RUN_JSON).into_response()
                }
            }
        }),
    );
    let url = serve(app).await;
    // A long backoff would make this test slow if Retry-After: 0 were not honoured; it is not
    // timed, only the result and the number of attempts are checked.
    let c = ManagerClient::new(&url, "token")
        .unwrap()
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_secs(5),
            ..RetryPolicy::default()
        });
    let run = c.get_run("run_1").await.unwrap();
    assert_eq!(run.id, "run_1");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/runs",
        post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "bad-request", "message": "backend must not be empty"})),
                )
            }
        }),
    );
    let url = serve(app).await;
    let err = client(&url)
        .create_run(aac_manager::protocol::CreateRun {
            id: None,
            backend: String::new(),
            bundle: None,
            config: serde_json::Value::Null,
            max_attempts: None,
            require_labels: Default::default(),
        })
        .await
        .unwrap_err();
    match &err {
        ClientError::Status {
            endpoint,
            status,
            code,
            message,
        } => {
            assert_eq!(endpoint, "POST /v1/runs");
            assert_eq!(*status, 400);
            assert_eq!(code, "bad-request");
            assert_eq!(message, "backend must not be empty");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn lease_409s_are_a_distinct_variant_and_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/runs/{run}/heartbeat",
        post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::CONFLICT,
                    axum::Json(serde_json::json!({"error": "lease-lost", "message": "stale"})),
                )
            }
        }),
    );
    let url = serve(app).await;
    let err = client(&url)
        .heartbeat("run_1", "t", None)
        .await
        .unwrap_err();
    assert!(err.is_lease_lost(), "{err:?}");
    assert_eq!(err.failure_kind(), FailureKind::LeaseLost);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn persistent_5xx_gives_up_at_the_deadline() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/runs/{run}",
        get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (StatusCode::TOO_MANY_REQUESTS, "slow down")
            }
        }),
    );
    let url = serve(app).await;
    let c = ManagerClient::new(&url, "token")
        .unwrap()
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            deadline: Duration::from_millis(100),
            ..RetryPolicy::default()
        });
    let err = c.get_run("run_1").await.unwrap_err();
    match &err {
        ClientError::Unavailable {
            attempts, status, ..
        } => {
            assert!(*attempts > 1, "{err}");
            assert_eq!(*status, Some(429));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst) as u32, err_attempts(&err));
}

fn err_attempts(e: &ClientError) -> u32 {
    match e {
        ClientError::Unavailable { attempts, .. } => *attempts,
        _ => 0,
    }
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = ManagerClient::new(&url, "token")
        .unwrap()
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            deadline: Duration::from_millis(50),
            ..RetryPolicy::default()
        });
    let err = c.get_run("run_1").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unavailable { status: None, .. }),
        "{err:?}"
    );
    assert!(err_attempts(&err) > 1, "{err}");
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let p = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
        multiplier: 2.0,
        jitter: 0.5,
        ..RetryPolicy::default()
    };
    for _ in 0..100 {
        let d1 = p.backoff(1);
        assert!(
            d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
            "{d1:?}"
        );
        let d3 = p.backoff(3);
        assert!(
            d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
            "{d3:?}"
        );
        let d20 = p.backoff(20);
        assert!(
            d20 >= Duration::from_millis(500) && d20 <= Duration::from_millis(1000),
            "{d20:?}"
        );
    }
}

#[tokio::test]
async fn a_reply_cut_off_mid_body_is_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/runs/{run}",
        get(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) == 0 {
                    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                        Ok(r#"{"id":"run_1","#),
                        Err(std::io::Error::other("manager died")),
                    ];
                    axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
                } else {
                    ([(header::CONTENT_TYPE, "application/json")], RUN_JSON).into_response()
                }
            }
        }),
    );
    let url = serve(app).await;
    let run = client(&url).get_run("run_1").await.unwrap();
    assert_eq!(run.id, "run_1");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
