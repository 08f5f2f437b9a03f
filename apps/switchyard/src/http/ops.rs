//! Operators' views: the background workers, refunds and notifications by status.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use orchestration::host::{PolicyKind, WorkerState, WorkerStatus};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Params, check};
use super::page::{self, Page};

/// For operators.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workers))
        .routes(routes!(refunds))
        .routes(routes!(notifications))
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

/// `GET /api/ops/refunds` and `GET /api/ops/notifications`: taken as text, so that a
/// bad value is reported against its parameter.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ByStatus {
    /// Only those in this status (refunds: `requested`, `refunded`, `refused` or
    /// `failed`, default `failed`; notifications: `pending`, `sent` or `dead`, default
    /// `dead`).
    status: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

impl ByStatus {
    /// The status (its default if absent), the limit and the cursor, or the problem
    /// naming every bad parameter.
    fn parse<S>(
        &self,
        default: S,
        parse: impl Fn(&str) -> Option<S>,
        names: &str,
    ) -> Result<(S, u64, Option<Uuid>), ApiError> {
        let mut errors = Vec::new();
        let limit = page::limit(&mut errors, self.limit.as_deref());
        let status = match &self.status {
            None => Some(default),
            Some(raw) => check(
                &mut errors,
                "status",
                parse(raw).ok_or_else(|| format!("must be one of {names}")),
            ),
        };
        let cursor = self
            .cursor
            .as_deref()
            .map(|raw| {
                check(
                    &mut errors,
                    "cursor",
                    Uuid::try_parse(raw)
                        .ok()
                        .filter(|_| raw.len() == 36)
                        .ok_or("is not a cursor of this collection"),
                )
            })
            .unwrap_or(None);
        match (status, limit) {
            (Some(status), Some(limit)) if errors.is_empty() => Ok((status, limit, cursor)),
            _ => Err(ApiError::invalid_query(errors)),
        }
    }
}

/// A refund as payments records it, for operators.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpsRefundView {
    /// The refund's id (its saga run's: `switchyard runs show <id>`).
    id: Uuid,
    /// The order refunded.
    order_id: String,
    /// `requested`, `refunded`, `refused` or `failed`.
    status: String,
    amount_minor: i64,
    currency: String,
    /// The key the gateway was asked under.
    gateway_key: String,
    /// Why it was refused or failed.
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Refunds by status, newest first: by default the failed ones (the gateway never
/// answered; it may have refunded: check it, then refund again, which asks under the
/// same key).
#[utoipa::path(
    get,
    path = "/api/ops/refunds",
    tag = "ops",
    operation_id = "ops_refunds",
    security(("session" = ["ops.read"])),
    params(ByStatus),
    responses(
        (status = 200, description = "One page", body = Page<OpsRefundView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn refunds(
    State(state): State<AppState>,
    Params(query): Params<ByStatus>,
) -> Result<Json<Page<OpsRefundView>>, ApiError> {
    let (status, limit, before) = query.parse(
        payments::RefundStatus::Failed,
        payments::RefundStatus::parse,
        "requested, refunded, refused, failed",
    )?;
    let intents = payments::refund_intents_with_status(
        state.fabric.connection(payments::SCHEMA)?,
        status,
        before,
        limit + 1,
    )
    .await?;
    let items = intents
        .into_iter()
        .map(|intent| OpsRefundView {
            id: intent.id,
            order_id: intent.order_reference,
            status: intent.status.to_string(),
            amount_minor: intent.amount_minor,
            currency: intent.currency,
            gateway_key: intent.gateway_key,
            error: intent.error,
            created_at: intent.created_at,
            updated_at: intent.updated_at,
        })
        .collect();
    Ok(Json(Page::new(
        items,
        limit,
        "/api/ops/refunds",
        &[("status", Some(status.as_str()))],
        |item: &OpsRefundView| item.id.to_string(),
    )))
}

/// A notification, for operators.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpsNotificationView {
    id: Uuid,
    /// What caused it (the event's id).
    cause: String,
    recipient: String,
    template: String,
    /// `pending`, `sent` or `dead`.
    status: String,
    /// Delivery attempts begun.
    attempts: u32,
    /// Why the last attempt failed.
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

/// Notifications by status, newest first: by default the dead ones (every attempt
/// failed, or the failure could not pass on a retry).
#[utoipa::path(
    get,
    path = "/api/ops/notifications",
    tag = "ops",
    operation_id = "ops_notifications",
    security(("session" = ["ops.read"])),
    params(ByStatus),
    responses(
        (status = 200, description = "One page", body = Page<OpsNotificationView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn notifications(
    State(state): State<AppState>,
    Params(query): Params<ByStatus>,
) -> Result<Json<Page<OpsNotificationView>>, ApiError> {
    let (status, limit, before) = query.parse(
        notifications::Status::Dead,
        notifications::Status::parse,
        "pending, sent, dead",
    )?;
    let found = notifications::with_status(
        state.fabric.connection(notifications::SCHEMA)?,
        status,
        before,
        limit + 1,
    )
    .await
    .map_err(|err| ApiError::internal(&err))?;
    let items = found
        .into_iter()
        .map(|n| OpsNotificationView {
            id: n.id,
            cause: n.cause,
            recipient: n.recipient,
            template: n.template,
            status: n.status.as_str().to_owned(),
            attempts: n.attempts,
            last_error: n.last_error,
            created_at: n.created_at,
            sent_at: n.sent_at,
        })
        .collect();
    Ok(Json(Page::new(
        items,
        limit,
        "/api/ops/notifications",
        &[("status", Some(status.as_str()))],
        |item: &OpsNotificationView| item.id.to_string(),
    )))
}
