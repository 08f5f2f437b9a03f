//! Liveness and readiness, and readiness's details for operators.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::ops::WorkerView;

/// For load balancers and orchestrators.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(details))
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// `{"status": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `live`; `ready` or `not_ready`.
    #[schema(value_type = String, pattern = "^(live|ready|not_ready)$")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    operation_id = "live",
    security(()),
    responses((status = 200, description = "Up", body = Status)),
)]
pub(crate) async fn live() -> Json<Status> {
    Json(Status { status: "live" })
}

/// Whether this instance should get traffic: every database answers, no migration is
/// pending, and no worker whose failure stops the host has failed. The body is the
/// status alone, for load balancers and anyone else; the details are at
/// `/api/ops/health`.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    operation_id = "ready",
    security(()),
    responses(
        (status = 200, description = "`ready`", body = Status),
        (status = 503, description = "`not_ready`: the details are at `/api/ops/health`", body = Status),
    ),
)]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Status>) {
    let readiness = Readiness::check(&state).await;
    (
        readiness.status_code(),
        Json(Status {
            status: readiness.status(),
        }),
    )
}

/// Readiness with its reasons.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthDetails {
    /// `ready` or `not_ready`.
    #[schema(value_type = String, pattern = "^(ready|not_ready)$")]
    status: &'static str,
    databases: Vec<DatabaseView>,
    /// `boundary/migration` for each migration not applied yet.
    pending_migrations: Vec<String>,
    /// The workers whose failure stopped the host.
    failed_workers: Vec<String>,
    workers: Vec<WorkerView>,
}

/// One database and whether it answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatabaseView {
    /// The database, without credentials.
    database: String,
    /// The boundaries it holds.
    boundaries: Vec<&'static str>,
    ok: bool,
    /// Why it did not answer.
    error: Option<String>,
}

/// Readiness with its reasons: each database and its boundaries, pending migrations,
/// failed workers and every worker's state. For operators (it names the databases).
#[utoipa::path(
    get,
    path = "/api/ops/health",
    tag = "ops",
    operation_id = "health_details",
    security(("session" = ["ops.read"])),
    responses(
        (status = 200, description = "Ready", body = HealthDetails),
        (status = 503, description = "Not ready, with the reasons", body = HealthDetails),
    ),
)]
pub(crate) async fn details(State(state): State<AppState>) -> (StatusCode, Json<HealthDetails>) {
    let readiness = Readiness::check(&state).await;
    let status = readiness.status_code();
    let body = HealthDetails {
        status: readiness.status(),
        databases: readiness
            .databases
            .into_iter()
            .map(|d| DatabaseView {
                database: d.database.to_string(),
                boundaries: d.boundaries,
                ok: d.error.is_none(),
                error: d.error,
            })
            .collect(),
        pending_migrations: readiness.pending,
        failed_workers: readiness.failed_workers,
        workers: readiness
            .workers
            .into_iter()
            .map(WorkerView::from)
            .collect(),
    };
    (status, Json(body))
}

/// How long readiness waits for a database to answer: a load balancer must hear back
/// quickly even when the database does not.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

struct Readiness {
    databases: Vec<orchestration::databases::DatabaseHealth>,
    pending: Vec<String>,
    failed_workers: Vec<String>,
    workers: Vec<orchestration::host::WorkerStatus>,
    ready: bool,
}

impl Readiness {
    async fn check(state: &AppState) -> Self {
        let databases = state.fabric.databases().health(PING_TIMEOUT).await;
        let reachable = databases.iter().all(|d| d.error.is_none());
        let mut pending = Vec::new();
        if reachable && !state.migrated.load(Ordering::Relaxed) {
            match state.fabric.databases().migration_status().await {
                Ok(states) => {
                    pending = states
                        .iter()
                        .flat_map(|s| s.pending.iter().map(move |m| format!("{}/{m}", s.boundary)))
                        .collect();
                    if pending.is_empty() {
                        state.migrated.store(true, Ordering::Relaxed);
                    }
                }
                Err(err) => pending.push(format!("unknown: {err}")),
            }
        }
        let workers = state.workers.snapshot();
        let failed_workers: Vec<String> = workers
            .iter()
            .filter(|w| w.failed_the_host())
            .map(|w| w.name.clone())
            .collect();
        let ready =
            reachable && state.migrated.load(Ordering::Relaxed) && failed_workers.is_empty();
        Self {
            databases,
            pending,
            failed_workers,
            workers,
            ready,
        }
    }

    fn status(&self) -> &'static str {
        if self.ready { "ready" } else { "not_ready" }
    }

    fn status_code(&self) -> StatusCode {
        if self.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use orchestration::host::{Host, Policy, Worker, WorkerContext, WorkerError};
    use orchestration::testing::{Engine, TestDatabase};

    use serde_json::{Value, json};

    use super::*;

    struct Broken;

    impl Worker for Broken {
        fn name(&self) -> &str {
            "broken"
        }

        async fn run(&self, _context: WorkerContext) -> Result<(), WorkerError> {
            Err("the ledger is gone".into())
        }
    }

    async fn get(router: &axum::Router, path: &str, bearer: &str) -> (StatusCode, Value) {
        let request = Request::get(path).header("authorization", bearer);
        crate::http::testing::call(router, request.body(Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn readiness_fails_once_a_stop_host_worker_has_failed() {
        let db = TestDatabase::create(Engine::Sqlite, migrations::all())
            .await
            .expect("SQLite is embedded");
        let fabric = db.fabric().clone();
        let mut host = Host::new(fabric.databases());
        host.add(Broken, Policy::StopHost).unwrap();
        let settings = crate::Config::default().settings().unwrap();
        let state = AppState::new(
            fabric.clone(),
            crate::application::workflows(&settings, &fabric).unwrap(),
            std::time::Duration::from_secs(1),
            host.health(),
            false,
        );
        let router = crate::http::router(state, &crate::Config::default());
        let operator = crate::http::testing::bearer(&fabric, &["ops.read"]).await;

        let (status, body) = get(&router, "/health/ready", &operator).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"status": "ready"}), "the status alone");
        let (_, body) = get(&router, "/api/ops/health", &operator).await;
        assert_eq!(body["workers"][0]["state"], "starting");

        let running = host.start();
        let failure = running.failed().await;
        assert_eq!(failure.worker, "broken");
        let (status, body) = get(&router, "/health/ready", &operator).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body, json!({"status": "not_ready"}));
        let (status, body) = get(&router, "/api/ops/health", &operator).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "not_ready");
        assert!(body["databases"][0]["database"].is_string(), "{body}");
        assert_eq!(body["failed_workers"], json!(["broken"]));
        let worker = &body["workers"][0];
        assert_eq!(worker["name"], "broken");
        assert_eq!(worker["policy"], "stop_host");
        assert_eq!(worker["state"], "failed");
        assert_eq!(worker["error"], "the ledger is gone");

        let (status, ops) = get(&router, "/api/ops/workers", &operator).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ops["workers"], body["workers"]);
        running.shutdown().await;
    }
}
