//! Logs and traces. Logs: `tracing` to stderr, filtered by `RUST_LOG` or `log.filter`;
//! text for a person at a terminal, JSON lines otherwise (`log.format` decides), each
//! line inside a request carrying its spans, so its `request_id` and `trace_id`. Traces:
//! with the `otel` feature, spans go out over OTLP/HTTP when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) variable is set.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// What must be flushed before the process exits.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not yet exported.
    pub(crate) fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "exporting the last spans failed");
        }
    }
}

/// Installs the global subscriber once; later calls (tests) change nothing.
pub(crate) fn init(config: &LogConfig) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(log_layer(config));
    #[cfg(feature = "otel")]
    {
        let provider = otel::exporting().then(otel::provider_from_env).flatten();
        let layer = provider.as_ref().map(otel::layer);
        if registry.with(layer).try_init().is_err() {
            return Telemetry::default();
        }
        Telemetry { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        Telemetry::default()
    }
}

/// Log lines to stderr in the configured format.
fn log_layer<S>(config: &LogConfig) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let terminal = std::io::stderr().is_terminal();
    let json = match config.format {
        LogFormat::Auto => !terminal,
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        // Every span from the root down, so a line deep inside a request still
        // names the request.
        layer
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .boxed()
    } else {
        // Colours only for a person at a terminal, not in files and log collectors.
        layer.with_ansi(terminal).boxed()
    }
}

/// The trace `span` belongs to, when traces are exported.
pub(crate) fn trace_id_of(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string())
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

/// The trace of the current span, when traces are exported.
pub(crate) fn trace_id() -> Option<String> {
    trace_id_of(&tracing::Span::current())
}

/// Records the span's trace id in its `trace_id` field, so that log lines carry it.
pub(crate) fn record_trace_id(span: &tracing::Span) {
    if let Some(trace_id) = trace_id_of(span) {
        span.record("trace_id", trace_id);
    }
}

#[cfg(feature = "otel")]
pub(crate) mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};

    /// Whether an OTLP endpoint is configured and the SDK not disabled.
    pub(super) fn exporting() -> bool {
        let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        !disabled
            && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    }

    /// An OTLP/HTTP exporter configured by the `OTEL_EXPORTER_OTLP_*` variables.
    pub(super) fn provider_from_env() -> Option<SdkTracerProvider> {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => Some(provider(exporter)),
            Err(err) => {
                eprintln!("switchyard: traces are not exported: {err}");
                None
            }
        }
    }

    /// Spans of the service `OTEL_SERVICE_NAME` (default `switchyard`), exported in
    /// batches by `exporter`.
    pub(crate) fn provider(exporter: impl SpanExporter + 'static) -> SdkTracerProvider {
        let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "switchyard".to_owned());
        SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(name).build())
            .with_batch_exporter(exporter)
            .build()
    }

    /// The layer that turns `tracing` spans into OpenTelemetry spans of `provider`.
    pub(crate) fn layer<S>(
        provider: &SdkTracerProvider,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("switchyard"))
    }
}
