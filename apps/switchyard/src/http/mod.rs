//! HTTP adapters: the router, its middleware, and health endpoints. Handlers are thin:
//! parse input into domain types, call a workflow or a module function, map the result.

mod audit;
mod error;
mod health;
mod ops;
mod orders;
mod products;
pub(crate) mod server;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use orchestration::{Fabric, HostHealth};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use workflows::PlaceOrder;

use crate::config::HttpConfig;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    fabric: Fabric,
    place_order: PlaceOrder,
    /// How long a placement request waits before answering `202 Accepted`.
    placement_wait: std::time::Duration,
    /// The background workers' health.
    workers: HostHealth,
    /// Set once no migration is pending (from the start if the app migrated at start);
    /// it stays set (migrations only move forward).
    migrated: Arc<AtomicBool>,
}

impl AppState {
    pub(crate) fn new(
        fabric: Fabric,
        place_order: PlaceOrder,
        placement_wait: std::time::Duration,
        workers: HostHealth,
        migrated: bool,
    ) -> Self {
        Self {
            fabric,
            place_order,
            placement_wait,
            workers,
            migrated: Arc::new(AtomicBool::new(migrated)),
        }
    }
}

/// The current time at the precision every backend stores (microseconds), so a
/// response shows the same instant a later read returns.
fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// The whole HTTP surface with its middleware.
pub(crate) fn router(state: AppState, config: &HttpConfig) -> Router {
    let api = Router::new()
        .route("/api/products", post(products::create))
        .route("/api/products/{sku}", get(products::show))
        .route("/api/products/{sku}/restock", post(products::restock))
        .route("/api/orders", post(orders::place))
        .route("/api/orders/{id}", get(orders::show))
        .route("/api/audit", get(audit::list))
        .route("/api/ops/workers", get(ops::workers))
        .route("/api/ops/health", get(health::details))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    // Each `layer` wraps everything before it: the request id is set first, the body
    // limit is checked last.
    // tower-http enforces the body limit; axum's own default limit is turned off so
    // that there is one limit, the configured one.
    api.layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout(),
        ))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::map_response(
            error::problem_for_bare_errors,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
