//! A collector stand-in for OpenTelemetry tests and benchmarks: accepts OTLP/HTTP protobuf on
//! `POST /v1/traces`, keeps each request's headers and body, and decodes the spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// What the stand-in received: each request's headers and raw body.
#[derive(Clone, Default)]
pub struct Collector {
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Collector {
    /// Serves `POST /v1/traces` on loopback; answers 200 with an empty export response.
    pub async fn start() -> (Self, String) {
        let collector = Self::default();
        let seen = collector.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.requests.lock().unwrap().push((headers, body));
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, url)
    }

    pub fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().unwrap().clone()
    }

    pub fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        for (_, body) in self.requests() {
            let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        spans.push(Span {
                            service: service.clone(),
                            name: span.name,
                            trace_id: hex::encode(span.trace_id),
                            span_id: hex::encode(span.span_id),
                            parent: hex::encode(span.parent_span_id),
                            start_unix_nano: span.start_time_unix_nano,
                            end_unix_nano: span.end_time_unix_nano,
                            status: span.status.map(|s| (s.code, s.message)),
                            attributes: span
                                .attributes
                                .into_iter()
                                .map(|kv| {
                                    let value =
                                        text(kv.value.as_ref().and_then(|v| v.value.as_ref()));
                                    (kv.key, value)
                                })
                                .collect(),
                        });
                    }
                }
            }
        }
        spans
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// One exported span, ids in hex, attribute values as text.
#[derive(Debug)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The status code (0 unset, 1 ok, 2 error) and message, when the span carries one.
    pub status: Option<(i32, String)>,
    pub attributes: HashMap<String, String>,
}
