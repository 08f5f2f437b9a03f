//! Refunds and cancellations of orders: `POST /api/orders/{id}/refund` (a saga: the
//! intent, the gateway, the order and its stock), the refunds of an order, and
//! `POST /api/orders/{id}/cancellation` for a placement still running.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use orchestration::saga::RunState;
use orders::Order;
use payments::RefundIntent;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use workflows::{
    PlaceOrderError, RefundOrderCommand, RefundOrderError, RefundOrderOutcome, RefundRefusal,
    RefundRun, Requester,
};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Body, ProblemType};
use super::orders::{LineBody, OrderView, READ_ANY, idempotency_key, parse_lines, status_url};

/// Who may refund any order, at any time.
const REFUND_ANY: &str = "orders.refund";

/// Refunds and cancellations (the `orders` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(refund))
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(cancel))
}

/// What to refund: the given lines, or without `lines` every unit not refunded yet.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefundBody {
    /// 1 to 100 lines of SKU and units; a SKU may appear more than once.
    #[schema(min_items = 1, max_items = 100)]
    lines: Option<Vec<LineBody>>,
}

/// A refund that went through: the money back to the customer, the units to stock.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefundView {
    id: Uuid,
    order_id: Uuid,
    #[schema(value_type = String, pattern = "^refunded$")]
    status: &'static str,
    /// The amount given back, in minor units of the order's currency.
    amount_minor: i64,
    currency: String,
    lines: Vec<RefundLineView>,
    /// The order as it stands now.
    order: OrderView,
}

/// Units of one line given back.
#[derive(Debug, Serialize, ToSchema)]
struct RefundLineView {
    sku: String,
    quantity: u32,
    unit_price_minor: i64,
}

/// A refund that has not ended within the wait: its status URL says how it ends.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefundAccepted {
    id: Uuid,
    #[schema(value_type = String, pattern = "^refunding$")]
    status: &'static str,
    /// Where to ask: `GET /api/orders/{id}/refunds/{refund_id}`.
    status_url: String,
}

/// How a refund stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefundStatusView {
    id: Uuid,
    order_id: Uuid,
    status: RefundState,
    /// Why it was refused (for `refused`): `kind` names the reason (`not_refundable`,
    /// `nothing_to_refund`, `not_in_order`, `more_than_ordered`, `more_than_paid`,
    /// `nothing_paid`, `in_progress`, `window_closed`), with its details.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    refusal: Option<serde_json::Value>,
    /// For `refunded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_minor: Option<i64>,
    /// For `refunded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<Vec<RefundLineView>>,
    /// For `failed`: the saga run's state (`compensated`: the order unchanged;
    /// `failed`: an operator is needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    run_state: Option<String>,
}

/// Where a refund is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum RefundState {
    /// Still running.
    Refunding,
    /// The money and the units went back.
    Refunded,
    /// Refused; nothing changed.
    Refused,
    /// The gateway refused it or kept failing.
    Failed,
}

/// A refund asked of the payment gateway, as payments records it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefundIntentView {
    /// The refund's id.
    id: Uuid,
    status: RefundIntentStatus,
    amount_minor: i64,
    currency: String,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// What became of a refund at the gateway.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum RefundIntentStatus {
    /// Asked for; no answer recorded yet.
    Requested,
    /// Given back.
    Refunded,
    /// Refused by the gateway: no money moved.
    Refused,
    /// The gateway kept failing: it may have refunded; an operator checks.
    Failed,
}

impl From<RefundIntent> for RefundIntentView {
    fn from(intent: RefundIntent) -> Self {
        use payments::RefundStatus;
        Self {
            id: intent.id,
            status: match intent.status {
                RefundStatus::Requested => RefundIntentStatus::Requested,
                RefundStatus::Refunded => RefundIntentStatus::Refunded,
                RefundStatus::Refused => RefundIntentStatus::Refused,
                RefundStatus::Failed => RefundIntentStatus::Failed,
            },
            amount_minor: intent.amount_minor,
            currency: intent.currency,
            error: intent.error,
            created_at: intent.created_at,
            updated_at: intent.updated_at,
        }
    }
}

fn lines_view(lines: Vec<orders::RefundLine>) -> Vec<RefundLineView> {
    lines
        .into_iter()
        .map(|line| RefundLineView {
            sku: line.sku,
            quantity: line.quantity,
            unit_price_minor: line.unit_price_minor,
        })
        .collect()
}

fn refund_url(order_id: Uuid, id: Uuid) -> String {
    format!("/api/orders/{order_id}/refunds/{id}")
}

/// The order `id` names, if the caller may see it: their own, or any with
/// `orders.read.any` or `orders.refund`. Another customer's order is answered as if
/// there were none.
async fn visible_order(state: &AppState, caller: &Caller, id: &str) -> Result<Order, ApiError> {
    let not_found = || ApiError::not_found(format!("no order with id {id}"));
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let order = orders::get(state.fabric.connection(orders::SCHEMA)?, id)
        .await?
        .ok_or_else(not_found)?;
    let visible = caller.can(READ_ANY)
        || caller.can(REFUND_ANY)
        || order.customer_id == caller.customer_id().as_str();
    if !visible {
        return Err(not_found());
    }
    Ok(order)
}

/// Refunds units of an order (`lines`), or every unit not refunded yet: the customer
/// within `orders.refund_window` of placing it, staff with `orders.refund` at any
/// time. A saga: the refund intent is recorded against the payment, the gateway
/// refunds under the intent's key, then the order becomes refunded or partly refunded
/// and the units go back to stock, together. Waits up to `orders.placement_wait`, then
/// answers `202 Accepted` with the status URL. With an `Idempotency-Key` (scoped to
/// the order), the same request again returns the first refund's outcome.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/refund",
    tag = "orders",
    operation_id = "refund_order",
    security(("session" = ["orders.place"]), ("session" = ["orders.refund"])),
    params(
        ("id" = String, Path, description = "The order's id"),
        ("Idempotency-Key" = Option<String>, Header, max_length = 190, pattern = "^[ -~]*[!-~][ -~]*$",
            description = "Makes the request idempotent for its order: 1 to 190 visible ASCII characters (inner spaces allowed). The same key with a different body is refused (`idempotency-key-reused`)."),
    ),
    request_body = RefundBody,
    responses(
        (status = 201, description = "Refunded", body = RefundView,
            headers(("Location" = String, description = "The refund's status URL"))),
        (status = 202, description = "Still refunding after the wait: ask the status URL", body = RefundAccepted,
            headers(("Location" = String, description = "The refund's status URL"))),
        (status = 400, description = "`invalid-idempotency-key`"),
        (status = 403, description = "`refund-window-closed`: the customer's window has closed"),
        (status = 404, description = "`not-found`: no order with this id that the caller may see"),
        (status = 409, description = "`refund-refused`: the order is not confirmed, nothing is left to refund, or another refund of it is running (`refusal`)"),
        (status = 422, description = "`validation`; `refund-refused`: a SKU not in the order, more units than are left, more money than was paid (`refusal`); `idempotency-key-reused`"),
        (status = 502, description = "`refund-failed`: the gateway refused the refund or kept failing; the order and its stock are unchanged (`refund` names it)"),
        (status = 503, description = "`unavailable`: a database is unavailable (`Retry-After`); `timeout`"),
    ),
)]
pub(crate) async fn refund(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<RefundBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let lines = body.lines.as_deref().map(parse_lines).transpose()?;
    let order = visible_order(&state, &caller, &id).await?;
    let requested_by = if caller.can(REFUND_ANY) {
        Requester::Staff(caller.account.id.to_string())
    } else {
        Requester::Customer(caller.customer_id())
    };
    let command = RefundOrderCommand {
        order_id: order.id,
        lines,
        requested_by,
    };
    let run = state
        .refund_order
        .refund(key.as_deref(), &command, state.placement_wait)
        .await?;
    respond(run)
}

fn respond(run: RefundRun) -> Result<Response, ApiError> {
    let url = refund_url(run.order_id, run.id);
    match run.outcome {
        RefundOrderOutcome::Refunded(refund) => Ok((
            StatusCode::CREATED,
            [(header::LOCATION, url)],
            Json(RefundView {
                id: refund.id,
                order_id: refund.order.id,
                status: "refunded",
                amount_minor: refund.amount_minor,
                currency: refund.order.currency.clone(),
                lines: lines_view(refund.lines),
                order: refund.order.into(),
            }),
        )
            .into_response()),
        RefundOrderOutcome::Pending => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, url.clone())],
            Json(RefundAccepted {
                id: run.id,
                status: "refunding",
                status_url: url,
            }),
        )
            .into_response()),
        RefundOrderOutcome::Refused(refusal) => {
            Err(refused(&refusal).with("refund", json!(run.id)))
        }
        RefundOrderOutcome::Failed { state, error } => Err(failed(run.id, state, &error)),
    }
}

fn refused(refusal: &RefundRefusal) -> ApiError {
    let detail = match refusal {
        RefundRefusal::NotRefundable { status } => {
            format!("an order that is {status} cannot be refunded")
        }
        RefundRefusal::NothingToRefund => "every unit of the order is refunded already".to_owned(),
        RefundRefusal::NotInOrder { sku } => format!("the order has no line with SKU {sku}"),
        RefundRefusal::MoreThanOrdered {
            sku,
            requested,
            refundable,
        } => format!("{requested} of {sku} asked for, {refundable} may be refunded"),
        RefundRefusal::MoreThanPaid {
            requested_minor,
            refundable_minor,
        } => format!(
            "a refund of {requested_minor} asked for, {refundable_minor} (minor units) may be refunded"
        ),
        RefundRefusal::NothingPaid => "the order has no charged payment".to_owned(),
        RefundRefusal::InProgress { refund_id } => {
            format!("refund {refund_id} of this order is still running; try again when it ends")
        }
        RefundRefusal::WindowClosed { closed_at } => {
            return ApiError::forbidden(
                ProblemType::RefundWindowClosed,
                "Refund window closed",
                format!("the order could be refunded by its customer until {closed_at}"),
            )
            .with("closed_at", json!(closed_at));
        }
    };
    let problem = match refusal {
        RefundRefusal::NotInOrder { .. }
        | RefundRefusal::MoreThanOrdered { .. }
        | RefundRefusal::MoreThanPaid { .. } => {
            ApiError::unprocessable(ProblemType::RefundRefused, "Refund refused", detail)
        }
        _ => ApiError::conflict(ProblemType::RefundRefused, "Refund refused", detail),
    };
    problem.with("refusal", json!(refusal))
}

fn failed(id: Uuid, state: RunState, error: &str) -> ApiError {
    match state {
        // Given up and undone: the intent is refused or failed, the order unchanged.
        RunState::Compensated | RunState::Cancelled => {
            tracing::warn!(refund = %id, %state, error, "refund failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ProblemType::RefundFailed,
                "Refund failed",
                "the payment gateway refused the refund or did not answer; the order and its \
                 stock are unchanged",
            )
            .with("refund", json!(id))
        }
        // Needs an operator; the details are in the logs and `switchyard runs show`.
        _ => ApiError::internal(&RefundNeedsOperator {
            id,
            error: error.to_owned(),
        })
        .with("refund", json!(id)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refund {id} failed and needs an operator: {error}")]
struct RefundNeedsOperator {
    id: Uuid,
    error: String,
}

/// The refunds asked of the payment gateway for an order, oldest first, with what
/// became of each (a refund the order did not allow never reaches the gateway and is
/// not listed).
#[utoipa::path(
    get,
    path = "/api/orders/{id}/refunds",
    tag = "orders",
    operation_id = "list_refunds",
    security(("session" = ["orders.place"]), ("session" = ["orders.read.any"]), ("session" = ["orders.refund"])),
    params(("id" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order's refunds", body = Vec<RefundIntentView>),
        (status = 404, description = "`not-found`: no order with this id that the caller may see"),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<RefundIntentView>>, ApiError> {
    let order = visible_order(&state, &caller, &id).await?;
    let intents = payments::refund_intents_for_order(
        state.fabric.connection(payments::SCHEMA)?,
        &order.id.to_string(),
    )
    .await?;
    Ok(Json(
        intents.into_iter().map(RefundIntentView::from).collect(),
    ))
}

/// How a refund stands.
#[utoipa::path(
    get,
    path = "/api/orders/{id}/refunds/{refund_id}",
    tag = "orders",
    operation_id = "show_refund",
    security(("session" = ["orders.place"]), ("session" = ["orders.read.any"]), ("session" = ["orders.refund"])),
    params(
        ("id" = String, Path, description = "The order's id"),
        ("refund_id" = String, Path, description = "The refund's id"),
    ),
    responses(
        (status = 200, description = "The refund", body = RefundStatusView),
        (status = 404, description = "`not-found`: no such refund of an order the caller may see"),
    ),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, refund_id)): Path<(String, String)>,
) -> Result<Json<RefundStatusView>, ApiError> {
    let order = visible_order(&state, &caller, &id).await?;
    let not_found = || ApiError::not_found(format!("no refund {refund_id} of order {id}"));
    let refund_id = Uuid::parse_str(&refund_id).map_err(|_| not_found())?;
    let run = state
        .refund_order
        .refund_of(refund_id)
        .await?
        .filter(|run| run.order_id == order.id)
        .ok_or_else(not_found)?;
    let mut view = RefundStatusView {
        id: run.id,
        order_id: run.order_id,
        status: RefundState::Refunding,
        refusal: None,
        amount_minor: None,
        lines: None,
        run_state: None,
    };
    match run.outcome {
        RefundOrderOutcome::Pending => {}
        RefundOrderOutcome::Refunded(refund) => {
            view.status = RefundState::Refunded;
            view.amount_minor = Some(refund.amount_minor);
            view.lines = Some(lines_view(refund.lines));
        }
        RefundOrderOutcome::Refused(refusal) => {
            view.status = RefundState::Refused;
            view.refusal = Some(json!(refusal));
        }
        RefundOrderOutcome::Failed { state, .. } => {
            view.status = RefundState::Failed;
            view.run_state = Some(state.to_string());
        }
    }
    Ok(Json(view))
}

/// A cancelled placement, as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CancellationView {
    /// The placement's id.
    id: Uuid,
    /// `cancelled` once undone; `cancelling` while its compensation runs (ask
    /// `GET /api/orders/{id}`).
    #[schema(value_type = String, pattern = "^(cancelled|cancelling)$")]
    status: &'static str,
}

/// Cancels a placement still running (the caller's own, or any with `orders.refund`):
/// it stops before its next step, and what took effect is undone (the charge refunded,
/// the stock released) by the saga's compensation. A placed order is refunded instead.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/cancellation",
    tag = "orders",
    operation_id = "cancel_placement",
    security(("session" = ["orders.place"]), ("session" = ["orders.refund"])),
    params(("id" = String, Path, description = "The placement's id")),
    responses(
        (status = 200, description = "Cancelled and undone", body = CancellationView),
        (status = 202, description = "Cancelled; still being undone after the wait", body = CancellationView,
            headers(("Location" = String, description = "The placement's status URL"))),
        (status = 404, description = "`not-found`: no placement with this id that the caller may see"),
        (status = 409, description = "`placement-ended`: the placement is over (placed: refund it instead)"),
    ),
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no placement with id {id}"));
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let placement = state
        .place_order
        .placement_of(parsed)
        .await?
        .filter(|p| caller.can(REFUND_ANY) || p.customer_id == caller.customer_id().as_str())
        .ok_or_else(not_found)?;
    let cancelled = match state
        .place_order
        .cancel(placement.id, state.placement_wait)
        .await
    {
        Ok(Some(cancelled)) => cancelled,
        Ok(None) => return Err(not_found()),
        Err(PlaceOrderError::NotRunning { state: run, .. }) => {
            let detail = if run == RunState::Completed {
                "the order is placed: refund it instead (POST /api/orders/{id}/refund)".to_owned()
            } else {
                format!("the placement is {run}: only a running placement can be cancelled")
            };
            return Err(
                ApiError::conflict(ProblemType::PlacementEnded, "Placement ended", detail)
                    .with("placement_state", json!(run.to_string())),
            );
        }
        Err(err) => return Err(err.into()),
    };
    let view = |status| CancellationView {
        id: cancelled.id,
        status,
    };
    Ok(match cancelled.outcome {
        workflows::PlaceOrderOutcome::Pending => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, status_url(cancelled.id))],
            Json(view("cancelling")),
        )
            .into_response(),
        // It completed before it saw the cancellation.
        workflows::PlaceOrderOutcome::Placed(_) => {
            return Err(ApiError::conflict(
                ProblemType::PlacementEnded,
                "Placement ended",
                "the order was placed before the cancellation took effect: refund it instead",
            )
            .with("placement_state", json!("completed")));
        }
        _ => (StatusCode::OK, Json(view("cancelled"))).into_response(),
    })
}

impl From<RefundOrderError> for ApiError {
    fn from(err: RefundOrderError) -> Self {
        if err.is_unavailable() {
            return ApiError::failure(&err, true);
        }
        match err {
            RefundOrderError::KeyReused { refund, .. } => ApiError::unprocessable(
                ProblemType::IdempotencyKeyReused,
                "Idempotency key reused",
                format!("{err}: send a new key for a different refund"),
            )
            .with("refund", json!(refund)),
            RefundOrderError::Orders(err) => err.into(),
            RefundOrderError::Saga(_) => ApiError::internal(&err),
        }
    }
}
