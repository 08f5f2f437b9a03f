//! Operators' views: the background workers, refunds and notifications by status, and
//! the product feed imports with their rejected rows.

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
        .routes(routes!(imports))
        .routes(routes!(import_rejects))
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

/// `GET /api/ops/refunds`: taken as text, so that a bad value is reported against its
/// parameter.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RefundsQuery {
    /// Only refunds in this status (default `failed`).
    #[param(value_type = Option<String>, pattern = "^(requested|refunded|refused|failed)$")]
    status: Option<String>,
    /// Refunds per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

/// `GET /api/ops/notifications`: taken as text, so that a bad value is reported against
/// its parameter.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NotificationsQuery {
    /// Only notifications in this status (default `dead`).
    #[param(value_type = Option<String>, pattern = "^(pending|sent|dead)$")]
    status: Option<String>,
    /// Notifications per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

/// The parameters both take, as given.
#[derive(Debug)]
struct ByStatus<'a> {
    status: Option<&'a str>,
    limit: Option<&'a str>,
    cursor: Option<&'a str>,
}

impl ByStatus<'_> {
    /// The status (its default if absent), the limit and the cursor, or the problem
    /// naming every bad parameter.
    fn parse<S>(
        &self,
        default: S,
        parse: impl Fn(&str) -> Option<S>,
        names: &str,
    ) -> Result<(S, u64, Option<Uuid>), ApiError> {
        let mut errors = Vec::new();
        let limit = page::limit(&mut errors, self.limit);
        let status = match self.status {
            None => Some(default),
            Some(raw) => check(
                &mut errors,
                "status",
                parse(raw).ok_or_else(|| format!("must be one of {names}")),
            ),
        };
        let cursor = page::uuid_cursor(&mut errors, self.cursor);
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
    params(RefundsQuery),
    responses(
        (status = 200, description = "One page", body = Page<OpsRefundView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn refunds(
    State(state): State<AppState>,
    Params(query): Params<RefundsQuery>,
) -> Result<Json<Page<OpsRefundView>>, ApiError> {
    let query = ByStatus {
        status: query.status.as_deref(),
        limit: query.limit.as_deref(),
        cursor: query.cursor.as_deref(),
    };
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
    params(NotificationsQuery),
    responses(
        (status = 200, description = "One page", body = Page<OpsNotificationView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn notifications(
    State(state): State<AppState>,
    Params(query): Params<NotificationsQuery>,
) -> Result<Json<Page<OpsNotificationView>>, ApiError> {
    let query = ByStatus {
        status: query.status.as_deref(),
        limit: query.limit.as_deref(),
        cursor: query.cursor.as_deref(),
    };
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

/// `GET /api/ops/imports`.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecentImports {
    /// At most this many, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A product feed import: one version of a feed, as far as it got.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportView {
    /// The feed's version: the SHA-256 of its content.
    feed: String,
    /// Where it was read from.
    source: String,
    /// Rows consumed (the next run starts after them).
    position: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// When it was imported to its end; `null` while unfinished.
    finished_at: Option<DateTime<Utc>>,
}

/// The product feed imports that ran last (`switchyard import products`, the
/// `vendor_sync` job), newest first.
#[utoipa::path(
    get,
    path = "/api/ops/imports",
    tag = "ops",
    operation_id = "ops_imports",
    security(("session" = ["ops.read"])),
    params(RecentImports),
    responses(
        (status = 200, description = "The imports", body = Vec<ImportView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn imports(
    State(state): State<AppState>,
    Params(query): Params<RecentImports>,
) -> Result<Json<Vec<ImportView>>, ApiError> {
    let mut errors = Vec::new();
    let Some(limit) = page::limit(&mut errors, query.limit.as_deref()) else {
        return Err(ApiError::invalid_query(errors));
    };
    let records =
        inventory::recent_feed_imports(state.fabric.connection(inventory::SCHEMA)?, limit).await?;
    Ok(Json(
        records
            .into_iter()
            .map(|record| ImportView {
                feed: record.feed,
                source: record.source,
                position: record.position,
                inserted: record.counts.inserted,
                updated: record.counts.updated,
                unchanged: record.counts.unchanged,
                rejected: record.counts.rejected,
                started_at: record.started_at,
                updated_at: record.updated_at,
                finished_at: record.finished_at,
            })
            .collect(),
    ))
}

/// `GET /api/ops/imports/{feed}/rejects`.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RejectsQuery {
    /// Rows per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// A row of a feed that was not imported.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RejectView {
    /// Its line in the feed (the header is line 1).
    line: u64,
    /// Its SKU as given, control characters escaped.
    sku: Option<String>,
    /// Why, naming the field.
    reason: String,
}

/// The rows of a feed import that were rejected, by line.
#[utoipa::path(
    get,
    path = "/api/ops/imports/{feed}/rejects",
    tag = "ops",
    operation_id = "ops_import_rejects",
    security(("session" = ["ops.read"])),
    params(("feed" = String, Path, description = "The feed's version (from `/api/ops/imports`): 64 hex digits"), RejectsQuery),
    responses(
        (status = 200, description = "One page", body = Page<RejectView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
        (status = 404, description = "`not-found`: no import of this feed"),
    ),
)]
pub(crate) async fn import_rejects(
    State(state): State<AppState>,
    axum::extract::Path(feed): axum::extract::Path<String>,
    Params(query): Params<RejectsQuery>,
) -> Result<Json<Page<RejectView>>, ApiError> {
    let mut errors = Vec::new();
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let after = match &query.cursor {
        None => Some(0),
        Some(raw) => check(
            &mut errors,
            "cursor",
            raw.parse::<u64>()
                .ok()
                .filter(|_| raw.len() <= 18)
                .ok_or("is not a cursor of this collection"),
        ),
    };
    let (Some(limit), Some(after)) = (limit, after) else {
        return Err(ApiError::invalid_query(errors));
    };
    let not_found = || ApiError::not_found(format!("no import of feed {feed}"));
    // A feed's version is a SHA-256 in hex; nothing else names one.
    if feed.len() != 64 || !feed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let conn = state.fabric.connection(inventory::SCHEMA)?;
    if inventory::feed_import(conn, &feed).await?.is_none() {
        return Err(not_found());
    }
    let rejects = inventory::feed_rejects(conn, &feed, after, limit + 1).await?;
    let path = format!("/api/ops/imports/{feed}/rejects");
    Ok(Json(Page::new(
        rejects
            .into_iter()
            .map(|reject| RejectView {
                line: reject.line,
                sku: reject.sku,
                reason: reject.reason,
            })
            .collect(),
        limit,
        &path,
        &[],
        |reject: &RejectView| reject.line.to_string(),
    )))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};

    async fn get(router: &axum::Router, path: &str, bearer: &str) -> (StatusCode, Value) {
        let request = Request::get(path).header("authorization", bearer);
        crate::http::testing::call(router, request.body(Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn imports_and_their_rejects_are_shown_to_operators() {
        let config = crate::Config::default();
        let (router, db) =
            crate::http::testing::sqlite_router(&config, std::time::Duration::from_secs(1)).await;
        let dir = tempfile::tempdir().unwrap();
        let feed = dir.path().join("feed.csv");
        std::fs::write(
            &feed,
            "sku,name,price_minor,currency,stock\nOPS-1,One,100,EUR,3\nOPS-2,Two,100,XYZ,1\n\
             OPS-3,Three,-5,EUR,1\n",
        )
        .unwrap();
        let summary = crate::import::import_products(
            db.fabric(),
            &crate::import::FeedSource::Path(feed),
            10,
            crate::import::progress_for_stderr().as_mut(),
            None,
        )
        .await
        .unwrap();
        let operator = crate::http::testing::bearer(db.fabric(), &["ops.read"]).await;

        let (status, imports) = get(&router, "/api/ops/imports", &operator).await;
        assert_eq!(status, StatusCode::OK, "{imports}");
        assert_eq!(imports[0]["feed"], summary.feed.as_str());
        assert_eq!(imports[0]["inserted"], 1);
        assert_eq!(imports[0]["rejected"], 2);
        assert_eq!(imports[0]["position"], 3);
        assert!(imports[0]["finished_at"].is_string(), "{imports}");

        let path = format!("/api/ops/imports/{}/rejects?limit=1", summary.feed);
        let (status, first) = get(&router, &path, &operator).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["items"][0]["line"], 3);
        assert!(
            first["items"][0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("currency:")
        );
        let (_, second) = get(&router, first["next"].as_str().unwrap(), &operator).await;
        assert_eq!(second["items"][0]["line"], 4, "{second}");
        assert_eq!(second["next"], Value::Null);

        for missing in [
            "/api/ops/imports/nope/rejects".to_owned(),
            format!("/api/ops/imports/{}/rejects", "0".repeat(64)),
        ] {
            let (status, _) = get(&router, &missing, &operator).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        }
        let (status, problem) = get(&router, "/api/ops/imports?limit=0", &operator).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            problem["errors"],
            json!([{"field": "limit", "message": "must be a whole number from 1 to 1000"}])
        );
    }
}
