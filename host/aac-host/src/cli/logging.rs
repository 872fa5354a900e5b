//! Where log lines go and how they look: `--log-format text|json` (or `AAC_LOG_FORMAT`), the
//! `AAC_LOG` filter, no colour unless stderr is a terminal and `NO_COLOR` is unset, and never the
//! wire dumps of the Docker and HTTP client libraries.

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The default filter: warnings, plugin log lines, and the manager's access log.
pub const DEFAULT_FILTER: &str = "warn,plugin=info,access=info,manager=info";

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, the event's fields flattened, and
    /// `span`/`spans` with the fields of the spans it happened in (run, attempt, command ids).
    Json,
}

/// Colour only for a terminal, and never when `NO_COLOR` is set to anything non-empty.
fn use_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Installs the process's subscriber: the log lines, plus `traces` (the OpenTelemetry exporter's
/// layer) when one is on.
pub fn init(format: LogFormat, traces: Option<crate::telemetry::BoxedLayer>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(use_colour())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let layer = layer
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            !is_wire_dump(meta)
        }));
    let layers: Vec<crate::telemetry::BoxedLayer> =
        std::iter::once(layer.boxed()).chain(traces).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// Debug and trace lines of the Docker and HTTP client libraries print whole request and response
/// bodies — a container's `Env`, so secret values — and are never shown, whatever `AAC_LOG` says.
fn is_wire_dump(meta: &tracing::Metadata<'_>) -> bool {
    const WIRE_LEVEL_CRATES: [&str; 6] =
        ["bollard", "hyper", "hyper_util", "h2", "reqwest", "rustls"];
    *meta.level() > tracing::Level::INFO
        && WIRE_LEVEL_CRATES.iter().any(|name| {
            meta.target()
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}
