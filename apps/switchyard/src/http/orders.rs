//! `/api/orders`: place orders (idempotently, with an `Idempotency-Key` header), list
//! them, and show an order or its placement's status.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use inventory::{Quantity, Sku};
use orchestration::saga::RunState;
use orders::{CustomerId, Order, OrderFilter, OrderStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use workflows::{PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome, Placement, Refusal};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Body, FieldError, Params, ProblemType, check};
use super::page::{self, Page};

/// Order placement and orders (the `orders` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, place))
        .routes(routes!(show))
}

/// An order to place, for the caller (the session's account is the customer: a
/// `customer_id` in the body is refused, not ignored).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaceOrderBody {
    /// 1 to 100 lines.
    #[schema(min_items = 1, max_items = 100)]
    lines: Vec<LineBody>,
}

/// One line of an order to place.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct LineBody {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "WIDGET-1")]
    sku: String,
    #[schema(minimum = 1, maximum = 1_000_000, example = 1)]
    quantity: i64,
}

/// A stored order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderView {
    id: Uuid,
    customer_id: String,
    status: OrderStatusView,
    /// The ISO 4217 currency of every amount.
    currency: String,
    /// The sum of the line totals, in minor units.
    total_minor: i64,
    lines: Vec<OrderLineView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Where an order is in its lifecycle.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum OrderStatusView {
    Pending,
    Confirmed,
    PartlyRefunded,
    Refunded,
    Cancelled,
}

/// One line of a stored order.
#[derive(Debug, Serialize, ToSchema)]
struct OrderLineView {
    sku: String,
    quantity: u32,
    /// The price of one unit when the order was placed, in minor units.
    unit_price_minor: i64,
    line_total_minor: i64,
    /// Units refunded so far.
    refunded_quantity: u32,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            id: order.id,
            customer_id: order.customer_id,
            status: match order.status {
                OrderStatus::Pending => OrderStatusView::Pending,
                OrderStatus::Confirmed => OrderStatusView::Confirmed,
                OrderStatus::PartlyRefunded => OrderStatusView::PartlyRefunded,
                OrderStatus::Refunded => OrderStatusView::Refunded,
                OrderStatus::Cancelled => OrderStatusView::Cancelled,
            },
            currency: order.currency,
            total_minor: order.total_minor,
            lines: order
                .lines
                .into_iter()
                .map(|line| OrderLineView {
                    sku: line.sku,
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                    line_total_minor: line.line_total_minor,
                    refunded_quantity: line.refunded_quantity,
                })
                .collect(),
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// A placement that has not ended within the wait: its status URL says how it ends.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlacementAccepted {
    /// The placement's id, which is the order's id once placed.
    id: Uuid,
    #[schema(value_type = String, pattern = "^placing$")]
    status: &'static str,
    /// Where to ask: `GET /api/orders/{id}`.
    status_url: String,
}

/// A placement that is not (yet) an order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlacementView {
    id: Uuid,
    status: PlacementStatus,
    /// Why it was refused (for `refused`): `kind` names the reason (`out_of_stock`,
    /// `unknown_product`, `invalid_order`, `verification_required`,
    /// `payment_declined`), with its details.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    refusal: Option<Value>,
    /// The saga run's state (for `abandoned`).
    #[serde(skip_serializing_if = "Option::is_none")]
    placement_state: Option<String>,
}

/// How a placement that is not an order stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PlacementStatus {
    /// Still running.
    Placing,
    /// Refused; nothing was charged and no stock is held.
    Refused,
    /// Given up; an operator may be needed.
    Abandoned,
}

/// An order, or a placement that is not (yet) one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum OrderOrPlacement {
    Order(OrderView),
    Placement(PlacementView),
}

/// `GET /api/orders`: taken as text, so that a bad value is reported against its
/// parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListOrders {
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatusView>)]
    status: Option<String>,
    /// Only this customer's orders (an account id; without `orders.read.any`, only the
    /// caller's own are listed).
    #[param(pattern = "^[!-~]{1,64}$")]
    customer_id: Option<String>,
    /// Orders per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

const MAX_LINES: usize = 100;

fn parse_command(
    customer_id: CustomerId,
    body: &PlaceOrderBody,
) -> Result<PlaceOrderCommand, ApiError> {
    let lines = parse_lines(&body.lines)?;
    Ok(PlaceOrderCommand { customer_id, lines })
}

/// 1 to 100 lines of SKU and quantity, each checked; every broken rule is named.
pub(super) fn parse_lines(body: &[LineBody]) -> Result<Vec<(Sku, Quantity)>, ApiError> {
    let mut errors = Vec::new();
    if body.is_empty() || body.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must have 1 to {MAX_LINES} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(body.len());
    for (i, line) in body.iter().enumerate() {
        let sku = check(
            &mut errors,
            format!("lines[{i}].sku"),
            Sku::parse(&line.sku),
        );
        let quantity = check(
            &mut errors,
            format!("lines[{i}].quantity"),
            Quantity::new(line.quantity),
        );
        if let (Some(sku), Some(quantity)) = (sku, quantity) {
            lines.push((sku, quantity));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(lines)
}

/// The header that makes a placement idempotent: the same key and body return the
/// first placement's response and repeat nothing.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = |message: String| {
        ApiError::bad_request(
            ProblemType::InvalidIdempotencyKey,
            "Invalid idempotency key",
            format!("the Idempotency-Key header {message}"),
        )
    };
    let key = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII".to_owned()))?;
    orchestration::saga::check_key(key).map_err(|err| invalid(err.to_string()))?;
    if key.len() > workflows::MAX_PLACEMENT_KEY_LEN {
        return Err(invalid(format!(
            "is longer than {} bytes",
            workflows::MAX_PLACEMENT_KEY_LEN
        )));
    }
    Ok(Some(key.to_owned()))
}

/// Places an order for the caller: holds the stock, charges the caller, confirms.
/// Waits up to `http.placement_wait` for the outcome, then answers `202 Accepted` with
/// the status URL to ask. With an `Idempotency-Key` (the caller's own: another caller's
/// same key is another placement), sending the same request again returns the first
/// placement's outcome and repeats nothing.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    operation_id = "place_order",
    security(("session" = ["orders.place"])),
    params(("Idempotency-Key" = Option<String>, Header, max_length = 190, pattern = "^[ -~]*[!-~][ -~]*$",
        description = "Makes the request idempotent for its caller: 1 to 190 visible ASCII characters (inner spaces allowed). The same key with a different body is refused (`idempotency-key-reused`).")),
    request_body = PlaceOrderBody,
    responses(
        (status = 201, description = "Placed and confirmed", body = OrderView,
            headers(("Location" = String, description = "The order's URL"))),
        (status = 202, description = "Still placing after the wait: ask the status URL", body = PlacementAccepted,
            headers(("Location" = String, description = "The placement's status URL"))),
        (status = 400, description = "`invalid-idempotency-key`"),
        (status = 402, description = "`payment-declined`: the gateway declined the charge (`placement` names the refused placement)"),
        (status = 403, description = "`verification-required`: an unverified customer may not pay this much"),
        (status = 409, description = "`out-of-stock`: less stock than asked for (`sku`, `requested`, `available`)"),
        (status = 422, description = "`validation`: fields that break a rule; `unknown-product`; `invalid-order`; `idempotency-key-reused`"),
        (status = 503, description = "`placement-abandoned`: undone, nothing charged; `unavailable`: a database is unavailable (`Retry-After`; with `Location` when the placement started); `timeout`"),
    ),
)]
pub(crate) async fn place(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body<PlaceOrderBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let command = parse_command(caller.customer_id(), &body)?;
    let placement = state
        .place_order
        .place(key.as_deref(), &command, state.placement_wait)
        .await?;
    respond(placement, &body)
}

pub(super) fn status_url(id: Uuid) -> String {
    format!("/api/orders/{id}")
}

fn respond(placement: Placement, body: &PlaceOrderBody) -> Result<Response, ApiError> {
    let id = placement.id;
    match placement.outcome {
        PlaceOrderOutcome::Placed(order) => Ok((
            StatusCode::CREATED,
            [(header::LOCATION, status_url(order.id))],
            Json(OrderView::from(order)),
        )
            .into_response()),
        PlaceOrderOutcome::Pending => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, status_url(id))],
            Json(PlacementAccepted {
                id,
                status: "placing",
                status_url: status_url(id),
            }),
        )
            .into_response()),
        PlaceOrderOutcome::Refused(refusal) => {
            Err(refused(refusal, body).with("placement", json!(id)))
        }
        PlaceOrderOutcome::Abandoned { state, error } => Err(abandoned(id, state, &error)),
    }
}

fn refused(refusal: Refusal, body: &PlaceOrderBody) -> ApiError {
    match refusal {
        Refusal::OutOfStock {
            sku,
            requested,
            available,
        } => ApiError::conflict(
            ProblemType::OutOfStock,
            "Out of stock",
            format!("out of stock: {requested} of {sku} requested, {available} available"),
        )
        .with("sku", json!(sku))
        .with("requested", json!(requested))
        .with("available", json!(available)),
        Refusal::UnknownProduct { sku } => {
            let fields = body
                .lines
                .iter()
                .enumerate()
                .filter(|(_, line)| line.sku == sku)
                .map(|(i, _)| FieldError::new(format!("lines[{i}].sku"), "no such product"))
                .collect::<Vec<_>>();
            ApiError::unprocessable(
                ProblemType::UnknownProduct,
                "Unknown product",
                format!("no product with SKU {sku}"),
            )
            .with("sku", json!(sku))
            .with("errors", json!(fields))
        }
        Refusal::InvalidOrder { message } => {
            ApiError::unprocessable(ProblemType::InvalidOrder, "Invalid order", format!("invalid order: {message}"))
        }
        Refusal::VerificationRequired {
            amount_minor,
            threshold_minor,
        } => ApiError::forbidden(
            ProblemType::VerificationRequired,
            "Verification required",
            format!(
                "an unverified customer may pay at most {threshold_minor} (minor units); this order is {amount_minor}"
            ),
        )
        .with("amount_minor", json!(amount_minor))
        .with("threshold_minor", json!(threshold_minor)),
        Refusal::PaymentDeclined { reason } => ApiError::payment_required(
            ProblemType::PaymentDeclined,
            "Payment declined",
            format!("the payment was declined: {reason}"),
        ),
    }
}

fn abandoned(id: Uuid, state: RunState, error: &str) -> ApiError {
    match state {
        // Undone: nothing was charged and no stock is held.
        RunState::Compensated | RunState::Cancelled => {
            tracing::warn!(placement = %id, %state, error, "placement abandoned");
            ApiError::unavailable(
                ProblemType::PlacementAbandoned,
                "Placement abandoned",
                format!("the order could not be placed ({state}); nothing was charged, try again"),
            )
            .with("placement", json!(id))
        }
        // Needs an operator; the details are in the logs and `switchyard runs show`.
        _ => ApiError::internal(&PlacementFailed {
            id,
            error: error.to_owned(),
        })
        .with("placement", json!(id)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("placement {id} failed and needs an operator: {error}")]
struct PlacementFailed {
    id: Uuid,
    error: String,
}

/// Shows an order, or how its placement stands while it is not (yet) one: the
/// caller's own, or any with `orders.read.any`.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    operation_id = "show_order",
    security(("session" = ["orders.place"]), ("session" = ["orders.read.any"])),
    params(("id" = String, Path, description = "The order's (and its placement's) id")),
    responses(
        (status = 200, description = "The order, or its placement's status", body = OrderOrPlacement),
        (status = 404, description = "`not-found`: no order or placement with this id that the caller may see"),
    ),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderOrPlacement>, ApiError> {
    let not_found = || ApiError::not_found(format!("no order with id {id}"));
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found())?;
    // Another customer's order is answered as if there were none.
    let visible =
        |customer_id: &str| caller.can(READ_ANY) || customer_id == caller.customer_id().as_str();
    if let Some(order) = orders::get(state.fabric.connection(orders::SCHEMA)?, parsed).await? {
        if !visible(&order.customer_id) {
            return Err(not_found());
        }
        return Ok(Json(OrderOrPlacement::Order(order.into())));
    }
    // Not an order (yet): a placement still running, refused or abandoned.
    let placement = state
        .place_order
        .placement_of(parsed)
        .await?
        .filter(|placement| visible(&placement.customer_id))
        .ok_or_else(not_found)?;
    let view = |status, refusal, placement_state| PlacementView {
        id: parsed,
        status,
        refusal,
        placement_state,
    };
    Ok(Json(OrderOrPlacement::Placement(match placement.outcome {
        PlaceOrderOutcome::Placed(order) => return Ok(Json(OrderOrPlacement::Order(order.into()))),
        PlaceOrderOutcome::Pending => view(PlacementStatus::Placing, None, None),
        PlaceOrderOutcome::Refused(refusal) => {
            view(PlacementStatus::Refused, Some(json!(refusal)), None)
        }
        PlaceOrderOutcome::Abandoned { state, .. } => {
            view(PlacementStatus::Abandoned, None, Some(state.to_string()))
        }
    })))
}

/// Who may see every customer's orders.
pub(super) const READ_ANY: &str = "orders.read.any";

/// Lists orders, newest first, a page at a time: the caller's own, or (with
/// `orders.read.any`) everyone's.
#[utoipa::path(
    get,
    path = "/api/orders",
    tag = "orders",
    operation_id = "list_orders",
    security(("session" = ["orders.place"]), ("session" = ["orders.read.any"])),
    params(ListOrders),
    responses(
        (status = 200, description = "One page", body = Page<OrderView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<ListOrders>,
) -> Result<Json<Page<OrderView>>, ApiError> {
    let mut errors = Vec::new();
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let mut filter = OrderFilter::default();
    if let Some(status) = &query.status {
        filter.status = check(
            &mut errors,
            "status",
            OrderStatus::parse(status)
                .ok_or("must be pending, confirmed, partly_refunded, refunded or cancelled"),
        );
    }
    if let Some(customer_id) = &query.customer_id {
        filter.customer_id = check(&mut errors, "customer_id", CustomerId::parse(customer_id));
    }
    filter.before = page::uuid_cursor(&mut errors, query.cursor.as_deref());
    let Some(limit) = limit.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid_query(errors));
    };
    if !caller.can(READ_ANY) {
        let own = caller.customer_id();
        if filter
            .customer_id
            .as_ref()
            .is_some_and(|asked| *asked != own)
        {
            // Another customer's orders: none the caller may see.
            return Ok(Json(Page::new(
                Vec::new(),
                limit,
                "/api/orders",
                &[],
                |o: &OrderView| o.id.to_string(),
            )));
        }
        filter.customer_id = Some(own);
    }
    let orders = orders::list(state.fabric.connection(orders::SCHEMA)?, &filter, limit + 1).await?;
    Ok(Json(Page::new(
        orders.into_iter().map(OrderView::from).collect(),
        limit,
        "/api/orders",
        &[
            ("status", query.status.as_deref()),
            ("customer_id", query.customer_id.as_deref()),
        ],
        |order| order.id.to_string(),
    )))
}

impl From<orders::Error> for ApiError {
    fn from(err: orders::Error) -> Self {
        use orders::Error;
        match err {
            Error::UnknownOrder { .. } => ApiError::not_found(err.to_string()),
            Error::InvalidTransition { .. } => ApiError::conflict(
                ProblemType::InvalidTransition,
                "Invalid status change",
                err.to_string(),
            ),
            Error::DuplicateOrder { .. } => {
                ApiError::conflict(ProblemType::DuplicateOrder, "Order exists", err.to_string())
            }
            // Refunds are decided inside their saga, whose refusals are values.
            Error::RefundRefused(_) => ApiError::internal(&err),
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::failure::is_unavailable(cause))
            }
            Error::Corrupt(_) => ApiError::internal(&err),
        }
    }
}

impl From<PlaceOrderError> for ApiError {
    fn from(err: PlaceOrderError) -> Self {
        if err.is_unavailable() {
            // The placement may have started: its status URL then says how it ends,
            // and the same request with the same key cannot place it twice.
            let problem = ApiError::failure(&err, true);
            return match err.placement() {
                Some(id) => problem
                    .located(&status_url(id))
                    .with("placement", json!(id)),
                None => problem,
            };
        }
        match err {
            PlaceOrderError::KeyReused { placement, .. } => ApiError::unprocessable(
                ProblemType::IdempotencyKeyReused,
                "Idempotency key reused",
                format!("{err}: send a new key for a different order"),
            )
            .with("placement", json!(placement)),
            PlaceOrderError::NotRunning { placement, state } => ApiError::conflict(
                ProblemType::PlacementEnded,
                "Placement ended",
                err.to_string(),
            )
            .with("placement", json!(placement))
            .with("placement_state", json!(state.to_string())),
            PlaceOrderError::Orders(err) => err.into(),
            PlaceOrderError::Saga(err) => ApiError::internal(&err),
        }
    }
}
