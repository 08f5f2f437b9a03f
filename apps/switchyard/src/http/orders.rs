//! `/api/orders`: place orders (idempotently, with an `Idempotency-Key` header) and
//! show an order or its placement's status.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inventory::{Quantity, Sku};
use orchestration::RunState;
use orders::CustomerId;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use workflows::{PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome, Placement, Refusal};

use super::AppState;
use super::error::{ApiError, Body, FieldError, check};

/// `POST /api/orders`.
#[derive(Debug, Deserialize)]
pub(crate) struct PlaceOrderBody {
    customer_id: String,
    lines: Vec<LineBody>,
}

#[derive(Debug, Deserialize)]
struct LineBody {
    sku: String,
    quantity: i64,
}

const MAX_LINES: usize = 100;

fn parse_command(body: &PlaceOrderBody) -> Result<PlaceOrderCommand, ApiError> {
    let mut errors = Vec::new();
    let customer_id = check(
        &mut errors,
        "customer_id",
        CustomerId::parse(&body.customer_id),
    );
    if body.lines.is_empty() || body.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must have 1 to {MAX_LINES} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(body.lines.len());
    for (i, line) in body.lines.iter().enumerate() {
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
    match customer_id {
        Some(customer_id) if errors.is_empty() => Ok(PlaceOrderCommand { customer_id, lines }),
        _ => Err(ApiError::validation(errors)),
    }
}

/// The header that makes a placement idempotent: the same key and body return the
/// first placement's response and repeat nothing.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = |message: String| {
        ApiError::bad_request(
            "invalid-idempotency-key",
            "Invalid idempotency key",
            format!("the Idempotency-Key header {message}"),
        )
    };
    let key = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII".to_owned()))?;
    orchestration::check_key(key).map_err(|err| invalid(err.to_string()))?;
    Ok(Some(key.to_owned()))
}

pub(crate) async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<PlaceOrderBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let command = parse_command(&body)?;
    let placement = state
        .place_order
        .place(key.as_deref(), &command, state.placement_wait)
        .await?;
    respond(placement, &body)
}

fn status_url(id: Uuid) -> String {
    format!("/api/orders/{id}")
}

fn respond(placement: Placement, body: &PlaceOrderBody) -> Result<Response, ApiError> {
    let id = placement.id;
    match placement.outcome {
        PlaceOrderOutcome::Placed(order) => Ok((
            StatusCode::CREATED,
            [(header::LOCATION, status_url(order.id))],
            Json(order),
        )
            .into_response()),
        PlaceOrderOutcome::Pending => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, status_url(id))],
            Json(json!({ "id": id, "status": "placing", "status_url": status_url(id) })),
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
            "out-of-stock",
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
                "unknown-product",
                "Unknown product",
                format!("no product with SKU {sku}"),
            )
            .with("sku", json!(sku))
            .with("errors", json!(fields))
        }
        Refusal::InvalidOrder { message } => {
            ApiError::unprocessable("invalid-order", "Invalid order", format!("invalid order: {message}"))
        }
        Refusal::VerificationRequired {
            amount_minor,
            threshold_minor,
        } => ApiError::forbidden(
            "verification-required",
            "Verification required",
            format!(
                "an unverified customer may pay at most {threshold_minor} (minor units); this order is {amount_minor}"
            ),
        )
        .with("amount_minor", json!(amount_minor))
        .with("threshold_minor", json!(threshold_minor)),
        Refusal::PaymentDeclined { reason } => ApiError::payment_required(
            "payment-declined",
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
                "placement-abandoned",
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

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no order with id {id}"));
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if let Some(order) = orders::get(state.fabric.connection(orders::SCHEMA)?, parsed).await? {
        return Ok(Json(order).into_response());
    }
    // Not an order (yet): a placement still running, refused or abandoned.
    let placement = state
        .place_order
        .placement_of(parsed)
        .await?
        .ok_or_else(not_found)?;
    let view = match placement.outcome {
        PlaceOrderOutcome::Placed(order) => return Ok(Json(order).into_response()),
        PlaceOrderOutcome::Pending => json!({ "id": parsed, "status": "placing" }),
        PlaceOrderOutcome::Refused(refusal) => {
            json!({ "id": parsed, "status": "refused", "refusal": refusal })
        }
        PlaceOrderOutcome::Abandoned { state, .. } => {
            json!({ "id": parsed, "status": "abandoned", "placement_state": state })
        }
    };
    Ok(Json(view).into_response())
}

impl From<orders::Error> for ApiError {
    fn from(err: orders::Error) -> Self {
        use orders::Error;
        match err {
            Error::UnknownOrder { .. } => ApiError::not_found(err.to_string()),
            Error::InvalidTransition { .. } => ApiError::conflict(
                "invalid-transition",
                "Invalid status change",
                err.to_string(),
            ),
            Error::DuplicateOrder { .. } => {
                ApiError::conflict("duplicate-order", "Order exists", err.to_string())
            }
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::is_unavailable(cause))
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
                "idempotency-key-reused",
                "Idempotency key reused",
                format!("{err}: send a new key for a different order"),
            )
            .with("placement", json!(placement)),
            PlaceOrderError::Orders(err) => err.into(),
            PlaceOrderError::Saga(err) => ApiError::internal(&err),
        }
    }
}
