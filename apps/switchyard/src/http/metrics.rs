//! Prometheus `/metrics`: the process's recorder (every `metrics::` call in the code
//! lands in it), HTTP request metrics, and connection pool gauges read at each scrape.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Histogram buckets, in seconds: from a fast read to a slow placement.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. If another recorder was installed
/// first (an embedding program's), `/metrics` shows only the pool gauges.
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only what it records"
            );
        }
        handle
    })
}

/// Prometheus's text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "metrics",
    security(("session" = ["ops.read"])),
    responses((status = 200, description = "Every metric, in Prometheus's text format", content_type = "text/plain")),
)]
pub(crate) async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    for pool in state.fabric.databases().pool_stats() {
        let database = pool.database.to_string();
        let in_use = pool
            .size
            .saturating_sub(u32::try_from(pool.idle).unwrap_or(u32::MAX));
        metrics::gauge!("switchyard_db_pool_connections", "database" => database.clone(), "pool" => pool.pool, "state" => "idle")
            .set(f64::from(u32::try_from(pool.idle).unwrap_or(u32::MAX)));
        metrics::gauge!("switchyard_db_pool_connections", "database" => database.clone(), "pool" => pool.pool, "state" => "in_use")
            .set(f64::from(in_use));
        metrics::gauge!("switchyard_db_pool_max_connections", "database" => database, "pool" => pool.pool)
            .set(f64::from(pool.max));
    }
    let handle = handle();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// Middleware: `http_server_request_duration_seconds` by method, matched route and
/// status (its `_count` counts requests). Routes are the router's templates
/// (`/api/orders/{id}`), or `unmatched`, so the labels stay few.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method, or `other` for one outside HTTP's standard set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}
