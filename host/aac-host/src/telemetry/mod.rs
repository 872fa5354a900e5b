//! OpenTelemetry traces over OTLP/HTTP (protobuf), bridged from the host's `tracing` spans.
//!
//! Off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
//! `OTEL_SDK_DISABLED` is not `true`, `OTEL_TRACES_EXPORTER` not `none`). The exporter reads the
//! standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `OTEL_BSP_*`); header
//! values are secrets and never logged. Spans go out in batches from a thread of their own, so an
//! unreachable collector costs a run nothing, and [`Telemetry::shutdown`] waits at most
//! [`SHUTDOWN_BUDGET`] for the last batch. The span tree is in docs/operations.md.

pub mod propagation;
mod skip_enter_exit;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{Layer, Registry};

/// The longest the exit waits for the last spans to reach the collector.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(2);
/// One export's deadline unless `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` says otherwise: a slow
/// collector never holds the export thread for the SDK's default 10 s.
const EXPORT_TIMEOUT: Duration = Duration::from_millis(1500);
/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "aac-host";

/// The tracer of the exporter that is on: for spans built outside `tracing`, with times of their
/// own (the runner's `execute_tool` spans).
static TRACER: std::sync::RwLock<Option<opentelemetry_sdk::trace::SdkTracer>> =
    std::sync::RwLock::new(None);

/// The exporter's tracer, when one is on.
pub fn tracer() -> Option<opentelemetry_sdk::trace::SdkTracer> {
    TRACER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A layer for the process's `tracing` subscriber.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The trace exporter of this process, when one is on.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// What the environment asks for.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Off,
    /// On, to this endpoint (only shown with its scheme, host and port).
    On {
        endpoint: String,
    },
    /// Asked for in a way this build cannot honour; the reason is logged and traces stay off.
    Unsupported(String),
}

fn wanted(var: &dyn Fn(&str) -> Option<String>) -> Wanted {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return Wanted::Off;
    }
    let Some(endpoint) =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Wanted::Off;
    };
    // The exporter would quietly fall back to localhost for a value it cannot parse.
    let scheme = endpoint.trim().split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("http" | "https")) || endpoint.trim().contains(char::is_whitespace) {
        return Wanted::Unsupported(format!(
            "the OTLP endpoint {} is not an http:// or https:// URL; traces stay off",
            shown_endpoint(&endpoint)
        ));
    }
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    if protocol.trim() != "http/protobuf" {
        return Wanted::Unsupported(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL {:?} is not supported by aac-host (only http/protobuf); \
             traces stay off",
            protocol.trim()
        ));
    }
    Wanted::On {
        endpoint: shown_endpoint(&endpoint),
    }
}

/// `scheme://host:port` of an endpoint: never a user, password, path or query written into it.
fn shown_endpoint(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.trim().split_once("://").unwrap_or(("", endpoint));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if scheme.is_empty() {
        format!("{host} (no scheme)")
    } else {
        format!("{scheme}://{host}")
    }
}

impl Telemetry {
    /// Starts the exporter when the environment asks for one; the layer goes into the process's
    /// subscriber. Problems are returned as lines to log once logging is up: telemetry never
    /// stops the host.
    pub fn from_env() -> (Self, Option<BoxedLayer>, Vec<String>) {
        match wanted(&|name| std::env::var(name).ok()) {
            Wanted::Off => (Self::default(), None, Vec::new()),
            Wanted::Unsupported(why) => (Self::default(), None, vec![why]),
            Wanted::On { endpoint } => match Self::start(None) {
                Ok((telemetry, layer)) => (
                    telemetry,
                    Some(layer),
                    vec![format!("exporting traces over OTLP/HTTP to {endpoint}")],
                ),
                Err(err) => (
                    Self::default(),
                    None,
                    vec![format!(
                        "could not start the trace exporter for {endpoint}: {err}; traces stay off"
                    )],
                ),
            },
        }
    }

    /// An exporter to `endpoint` (the base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`), whatever the
    /// environment says: for benchmarks and tests that build their own subscriber.
    pub fn to_endpoint(endpoint: &str) -> Result<(Self, BoxedLayer), String> {
        Self::start(Some(&format!(
            "{}/v1/traces",
            endpoint.trim_end_matches('/')
        )))
    }

    fn start(traces_url: Option<&str>) -> Result<(Self, BoxedLayer), String> {
        let timeout_set = [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if !timeout_set {
            builder = builder.with_timeout(EXPORT_TIMEOUT);
        }
        if let Some(url) = traces_url {
            builder = builder.with_endpoint(url);
        }
        // The error names the setting, never a header's value.
        let exporter = builder.build().map_err(|err| err.to_string())?;
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
        let resource = Resource::builder()
            .with_service_name(service)
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("aac-host");
        *TRACER.write().unwrap_or_else(|e| e.into_inner()) = Some(tracer.clone());
        // No work on span entries and exits (every poll of an instrumented future): the spans
        // end when they close. See `skip_enter_exit`.
        let layer = skip_enter_exit::SkipEnterExit(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                // Spans around futures are entered on every poll (thousands in a busy turn): no
                // busy/idle clocks and no OpenTelemetry context switch on each, nothing here reads them.
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(tracing_subscriber::filter::filter_fn(exported)),
        )
        .boxed();
        Ok((
            Self {
                provider: Some(provider),
            },
            layer,
        ))
    }

    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans not yet exported, waiting at most [`SHUTDOWN_BUDGET`]; an unreachable or
    /// slow collector loses them (with a warning) rather than hold the exit.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        TRACER.write().unwrap_or_else(|e| e.into_inner()).take();
        let (done, finished) = std::sync::mpsc::channel();
        // A thread of its own: the SDK's shutdown blocks, and the exit must not wait past the
        // budget whatever the exporter does.
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let result = provider.shutdown_with_timeout(SHUTDOWN_BUDGET);
                let _ = done.send(result);
            });
        if spawned.is_err() {
            tracing::warn!("could not flush the last trace spans: no thread for it");
            return;
        }
        match finished.recv_timeout(SHUTDOWN_BUDGET + Duration::from_millis(200)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "the last trace spans were not exported"),
            Err(_) => tracing::warn!(
                budget_ms = SHUTDOWN_BUDGET.as_millis() as u64,
                "the collector did not take the last trace spans in time; they are dropped"
            ),
        }
    }
}

/// Only the host's own spans are exported: not its log lines (which stay on stderr) and nothing
/// of the HTTP, Docker or wasm libraries.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("aac_") && *meta.level() <= tracing::Level::INFO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        assert_eq!(wanted(&env(&[])), Wanted::Off);
        assert_eq!(
            wanted(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            Wanted::Off
        );
        assert_eq!(
            wanted(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ])),
            Wanted::Off
        );
        assert_eq!(
            wanted(&env(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://127.0.0.1:4318/v1/traces"
                ),
                ("OTEL_TRACES_EXPORTER", "none"),
            ])),
            Wanted::Off
        );
    }

    #[test]
    fn the_signal_endpoint_wins_and_is_shown_without_credentials() {
        let on = wanted(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://user:s3cret@collector.internal:4318/v1/traces?key=s3cret",
            ),
        ]));
        assert_eq!(
            on,
            Wanted::On {
                endpoint: "https://collector.internal:4318".into()
            }
        );
    }

    #[test]
    fn an_endpoint_that_is_no_url_keeps_traces_off() {
        let Wanted::Unsupported(why) =
            wanted(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]))
        else {
            panic!("no scheme must be refused");
        };
        assert!(why.contains("http://"), "{why}");
    }

    #[test]
    fn an_unsupported_protocol_keeps_traces_off_and_says_why() {
        let Wanted::Unsupported(why) = wanted(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])) else {
            panic!("grpc must be refused");
        };
        assert!(
            why.contains("\"grpc\"") && why.contains("http/protobuf"),
            "{why}"
        );
        assert!(matches!(
            wanted(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ])),
            Wanted::On { .. }
        ));
    }
}
