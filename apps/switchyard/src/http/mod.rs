//! HTTP adapters: the router, its middleware, and health endpoints. Handlers are thin:
//! parse input into domain types, call a workflow or a module function, map the result.

mod accounts;
mod audit;
mod auth;
mod customers;
mod error;
mod health;
pub(crate) mod metrics;
mod openapi;
mod ops;
mod orders;
mod page;
mod products;
mod refunds;
mod registrations;
mod sessions;
// cargo xtask new-module: route files above this line.
pub(crate) mod server;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use orchestration::{Fabric, host::HostHealth};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use workflows::{Login, PlaceOrder, RefundOrder, Registration};

/// The workflows the handlers run.
#[derive(Debug, Clone)]
pub(crate) struct Workflows {
    pub(crate) place_order: PlaceOrder,
    pub(crate) refund_order: RefundOrder,
    pub(crate) login: Login,
    pub(crate) registration: Registration,
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    fabric: Fabric,
    place_order: PlaceOrder,
    refund_order: RefundOrder,
    login: Login,
    registration: Registration,
    /// How long a placement request waits before answering `202 Accepted`.
    placement_wait: std::time::Duration,
    /// The background workers' health.
    workers: HostHealth,
    /// Set once no migration is pending (from the start if the app migrated at start);
    /// it stays set (migrations only move forward).
    migrated: Arc<AtomicBool>,
    /// The OpenAPI document, as served.
    openapi: Arc<str>,
    /// What each operation requires, from the document.
    access: Arc<auth::AccessTable>,
}

impl AppState {
    pub(crate) fn new(
        fabric: Fabric,
        workflows: Workflows,
        placement_wait: std::time::Duration,
        workers: HostHealth,
        migrated: bool,
    ) -> Self {
        Self {
            fabric,
            place_order: workflows.place_order,
            refund_order: workflows.refund_order,
            login: workflows.login,
            registration: workflows.registration,
            placement_wait,
            workers,
            migrated: Arc::new(AtomicBool::new(migrated)),
            openapi: Arc::from(""),
            access: Arc::default(),
        }
    }
}

impl AppState {
    /// The current time by the fabric's clock, at the precision every backend stores
    /// (microseconds), so a response shows the same instant a later read returns.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use chrono::SubsecRound;
        self.fabric.clock().now().trunc_subsecs(6)
    }
}

/// Each module's routes (`routes()` in its file here), merged into one API and one
/// document. `cargo xtask new-module NAME` adds a module's file and its line.
const MODULES: &[fn() -> OpenApiRouter<AppState>] = &[
    sessions::routes,
    registrations::routes,
    accounts::routes,
    products::routes,
    orders::routes,
    refunds::routes,
    customers::routes,
    audit::routes,
    ops::routes,
    health::routes,
    // cargo xtask new-module: routes above this line.
];

/// Every documented route, with the document they make. `/metrics` is among them when
/// it is served on this listener.
fn api(with_metrics: bool) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let api = MODULES.iter().fold(
        OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()),
        |api, routes| api.merge(routes()),
    );
    let api = if with_metrics {
        api.routes(routes!(metrics::serve))
    } else {
        api
    };
    api.split_for_parts()
}

/// The OpenAPI document of the API as `config` serves it.
pub(crate) fn document(config: &crate::Config) -> serde_json::Value {
    openapi::finish(api(config.metrics.addr.is_none()).1)
}

/// `/metrics` alone, for its own listener (`metrics.addr`).
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::serve))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// The whole HTTP surface with its middleware.
pub(crate) fn router(mut state: AppState, config: &crate::Config) -> Router {
    let (routes, document) = api(config.metrics.addr.is_none());
    let document = openapi::finish(document);
    state.access = Arc::new(auth::AccessTable::from_document(&document));
    state.openapi = Arc::from(document.to_string());
    let http = &config.http;
    let api = routes
        // On the routes only: an unknown path is a 404 whoever asks.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    // Each `layer` wraps everything before it: the request id is set first, the body
    // limit is checked last.
    // tower-http enforces the body limit; axum's own default limit is turned off so
    // that there is one limit, the configured one.
    api.layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(http.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            http.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(error::problems))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let route = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(axum::extract::MatchedPath::as_str);
                let span = tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    route,
                    request_id,
                    trace_id = tracing::field::Empty,
                );
                crate::telemetry::record_trace_id(&span);
                span
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// What the router's tests share: an app on a fresh SQLite database, and a call.
#[cfg(test)]
pub(crate) mod testing {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use orchestration::testing::{Engine, TestDatabase};
    use tower::ServiceExt;

    use super::AppState;
    use crate::Config;

    /// The router on a fresh SQLite database (kept alive by the returned handle), with
    /// no workers running and `placement_wait` for placements.
    pub(crate) async fn sqlite_router(
        config: &Config,
        placement_wait: std::time::Duration,
    ) -> (axum::Router, TestDatabase) {
        let db = TestDatabase::create(Engine::Sqlite, migrations::all())
            .await
            .expect("SQLite is embedded");
        let fabric = db.fabric().clone();
        let state = AppState::new(
            fabric.clone(),
            crate::application::workflows(&config.settings().unwrap(), &fabric).unwrap(),
            placement_wait,
            orchestration::host::Host::new(fabric.databases()).health(),
            true,
        );
        (super::router(state, config), db)
    }

    /// The `Authorization` header of a session of a new active account whose one role
    /// grants `abilities`.
    pub(crate) async fn bearer(fabric: &orchestration::Fabric, abilities: &[&str]) -> String {
        use identity::{AccountKind, AccountStatus, DisplayName, Email, NewAccount, RoleName};
        let conn = fabric.connection(identity::SCHEMA).unwrap();
        let now = fabric.clock().now();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let account = identity::create_account(
            conn,
            &NewAccount {
                email: Email::parse(&format!("t{id}@example.com")).unwrap(),
                display_name: DisplayName::parse("Test").unwrap(),
                kind: AccountKind::Staff,
                status: AccountStatus::Active,
            },
            now,
        )
        .await
        .unwrap();
        let role = RoleName::parse(&format!("test_{id}")).unwrap();
        let granted = abilities
            .iter()
            .map(|a| identity::Ability::parse(a).unwrap())
            .collect();
        identity::define_role(conn, &role, &granted).await.unwrap();
        identity::grant_role(conn, account.id, &role).await.unwrap();
        let (_, token) =
            identity::start_session(conn, account.id, "test", now, chrono::Duration::hours(1))
                .await
                .unwrap();
        format!("Bearer {}", token.as_str())
    }

    /// Sends `request`; the status and the body as JSON.
    pub(crate) async fn call(
        router: &axum::Router,
        request: Request<Body>,
    ) -> (StatusCode, serde_json::Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }
}
