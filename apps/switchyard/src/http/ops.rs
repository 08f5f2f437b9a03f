//! Operators' views: the background workers.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use orchestration::host::{PolicyKind, WorkerState, WorkerStatus};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// For operators.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workers))
        .routes(routes!(super::openapi::serve))
}

/// Every worker's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Workers {
    workers: Vec<WorkerView>,
}

/// One worker's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkerView {
    name: String,
    /// How it is supervised.
    policy: PolicyView,
    /// Its schedule, for jobs (`every 30s`, `cron 0 * * * *`, with `, singleton`).
    schedule: Option<String>,
    state: StateView,
    /// Why it failed (for `backing_off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// When it restarts (for `backing_off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt: Option<DateTime<Utc>>,
    /// Why it failed for good (for `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// In this state since.
    since: DateTime<Utc>,
    /// Restarts since the host started.
    restarts: u32,
    /// For jobs: the scheduled time of the last tick this instance ran.
    last_tick: Option<DateTime<Utc>>,
    /// For jobs: how many ticks this instance ran.
    ticks: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PolicyView {
    /// Restarted with backoff.
    Restart,
    /// Its failure stops the host.
    StopHost,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum StateView {
    Starting,
    Running,
    BackingOff,
    Stopped,
    Failed,
}

impl From<WorkerStatus> for WorkerView {
    fn from(status: WorkerStatus) -> Self {
        let (state, last_error, next_attempt, error) = match status.state {
            WorkerState::Starting => (StateView::Starting, None, None, None),
            WorkerState::Running => (StateView::Running, None, None, None),
            WorkerState::BackingOff {
                last_error,
                next_attempt,
            } => (
                StateView::BackingOff,
                Some(last_error),
                Some(next_attempt),
                None,
            ),
            WorkerState::Stopped => (StateView::Stopped, None, None, None),
            WorkerState::Failed { error } => (StateView::Failed, None, None, Some(error)),
        };
        Self {
            name: status.name,
            policy: match status.policy {
                PolicyKind::Restart => PolicyView::Restart,
                PolicyKind::StopHost => PolicyView::StopHost,
            },
            schedule: status.schedule,
            state,
            last_error,
            next_attempt,
            error,
            since: status.since,
            restarts: status.restarts,
            last_tick: status.last_tick,
            ticks: status.ticks,
        }
    }
}

/// Every worker's state, as in `/api/ops/health`.
#[utoipa::path(
    get,
    path = "/api/ops/workers",
    tag = "ops",
    operation_id = "workers",
    security(("session" = ["ops.read"])),
    responses((status = 200, description = "Every worker", body = Workers)),
)]
pub(crate) async fn workers(State(state): State<AppState>) -> Json<Workers> {
    Json(Workers {
        workers: state
            .workers
            .snapshot()
            .into_iter()
            .map(WorkerView::from)
            .collect(),
    })
}
