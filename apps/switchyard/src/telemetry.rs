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
    let terminal = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter).with(log_layer(
        config.format,
        terminal,
        std::io::stderr,
    ));
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

/// Log lines to `writer` in `format`; `terminal` says whether a person reads them.
fn log_layer<S, W>(format: LogFormat, terminal: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
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

#[cfg(test)]
mod log_tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Log lines written into memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, terminal: bool) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = log_layer(format, terminal, move || writer.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let request = tracing::info_span!("http", request_id = "req-1", trace_id = "t-1");
            let _request = request.enter();
            let _work = tracing::info_span!("unit_of_work", pipeline = "p").entered();
            tracing::info!("deep inside");
        });
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn off_a_terminal_each_line_is_json_naming_its_request() {
        let text = logged(LogFormat::Auto, false);
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["fields"]["message"], "deep inside");
        let spans = line["spans"].as_array().expect("the span list");
        assert_eq!(spans[0]["request_id"], "req-1", "{line}");
        assert_eq!(spans[0]["trace_id"], "t-1", "{line}");
        assert_eq!(spans[1]["name"], "unit_of_work", "{line}");
    }

    #[test]
    fn at_a_terminal_lines_are_text_unless_json_is_asked_for() {
        let text = logged(LogFormat::Auto, true);
        assert!(
            text.contains("request_id") && text.contains("req-1") && text.contains("deep inside"),
            "{text}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
        assert!(
            serde_json::from_str::<serde_json::Value>(logged(LogFormat::Json, true).trim()).is_ok()
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(logged(LogFormat::Text, false).trim())
                .is_err()
        );
    }
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use crate::Config;

    /// Keeps every exported span.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    async fn post(
        router: &axum::Router,
        bearer: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .header("authorization", bearer)
            .body(Body::from(body.to_string()))
            .unwrap();
        crate::http::testing::call(router, request).await
    }

    /// One placement is one trace: the HTTP request's span, the saga under it, its
    /// steps, their units of work and theirs, each with its parent in the trace.
    #[tokio::test]
    async fn a_placement_is_one_connected_trace() {
        let spans = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(super::otel::layer(&provider));
        // Global, as in the app: a thread's own default would miss the spans that
        // sqlx's SQLite worker threads enter, and leak them open.
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test of this binary installs a subscriber");

        let (router, db) = crate::http::testing::sqlite_router(
            &Config::default(),
            std::time::Duration::from_secs(10),
        )
        .await;
        let admin = crate::http::testing::bearer(db.fabric(), &[identity::EVERY_ABILITY]).await;
        let product =
            json!({"sku": "T-1", "name": "T", "price_minor": 100, "currency": "EUR", "stock": 5});
        assert_eq!(
            post(&router, &admin, "/api/products", product).await.0,
            StatusCode::CREATED
        );
        let order = json!({"lines": [{"sku": "T-1", "quantity": 1}]});
        let (status, placed) = post(&router, &admin, "/api/orders", order).await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        // A refusal carries the trace id: the same id as the spans'.
        let (status, refused) = post(&router, &admin, "/api/orders", json!({"lines": []})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let refused_trace = refused["trace_id"].as_str().expect("a trace id").to_owned();
        provider.force_flush().unwrap();

        let spans = spans.0.lock().unwrap().clone();
        let saga = spans.iter().find(|s| s.name == "saga").unwrap_or_else(|| {
            panic!(
                "no saga span in {:?}",
                spans
                    .iter()
                    .map(|s| (s.name.as_ref(), s.span_context.trace_id(), s.parent_span_id))
                    .collect::<Vec<_>>()
            )
        });
        let trace = saga.span_context.trace_id();
        let in_trace: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        let names: BTreeSet<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
        for name in ["http", "saga", "saga_step", "unit_of_work", "step"] {
            assert!(
                names.contains(name),
                "no {name} span in the trace: {names:?}"
            );
        }
        let ids: HashMap<_, _> = in_trace
            .iter()
            .map(|s| (s.span_context.span_id(), s.name.as_ref()))
            .collect();
        let roots: Vec<&str> = in_trace
            .iter()
            .filter(|s| !ids.contains_key(&s.parent_span_id))
            .map(|s| s.name.as_ref())
            .collect();
        assert_eq!(
            roots,
            ["http"],
            "one root, the request; every other span's parent is in the trace"
        );
        assert!(
            spans
                .iter()
                .any(|s| s.span_context.trace_id().to_string() == refused_trace),
            "the problem's trace id is a trace that was exported"
        );
        assert_ne!(
            refused_trace,
            trace.to_string(),
            "each request is its own trace"
        );
    }
}
