//! Structured logs and OpenTelemetry traces for every Boomerang process.
//!
//! Logs go to stderr as JSON (or human-readable text for local use). Traces are exported over OTLP/gRPC only when an
//! endpoint is configured; otherwise spans still structure the logs but nothing leaves the process. Incoming gRPC
//! requests continue the caller's trace through the W3C `traceparent` header.

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The `[telemetry]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` for machines, `text` for people.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,boomerang_ingestion=debug`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// OTLP/gRPC endpoint such as `http://otel-collector:4317`; empty disables trace export.
    pub otlp_endpoint: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter directive does not parse.
    #[error("invalid telemetry.log_level {directive:?}: {source}")]
    Filter {
        directive: String,
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot build the otlp exporter for {endpoint:?}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A global subscriber was already installed.
    #[error("telemetry is already initialised: {0}")]
    AlreadyInitialised(#[from] tracing_subscriber::util::TryInitError),
}

/// Flushes and shuts down trace export when dropped; keep it alive for the life of the process.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace export shutdown failed: {err}");
        }
    }
}

/// Installs the global log subscriber and, when an OTLP endpoint is configured, the trace exporter.
///
/// Must be called from within a Tokio runtime when trace export is enabled (the gRPC exporter spawns onto it).
pub fn init(
    config: &TelemetryConfig,
    service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(&directive)
            .map_err(|source| TelemetryError::Filter { directive, source })?,
        _ => EnvFilter::try_new(&config.log_level).map_err(|source| TelemetryError::Filter {
            directive: config.log_level.clone(),
            source,
        })?,
    };
    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if config.otlp_endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&config.otlp_endpoint)
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: config.otlp_endpoint.clone(),
                source,
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_owned()))
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// The span of one incoming gRPC call, continuing the caller's trace when it sent a `traceparent` header.
pub fn grpc_request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let span =
        tracing::info_span!("grpc", otel.name = %path, rpc.system = "grpc", rpc.method = %path);
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // A missing or malformed traceparent simply starts a new trace.
    let _ = span.set_parent(parent);
    span
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
