//! `/api/orders`: place and show orders.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use inventory::{Quantity, Sku};
use orders::{CustomerId, Order};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use workflows::{PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome};

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

pub(crate) async fn place(
    State(state): State<AppState>,
    Body(body): Body<PlaceOrderBody>,
) -> Result<Response, ApiError> {
    let command = parse_command(&body)?;
    match state.place_order.place(&command, super::now()).await? {
        PlaceOrderOutcome::Placed(order) => {
            let location = format!("/api/orders/{}", order.id);
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(order),
            )
                .into_response())
        }
        PlaceOrderOutcome::OutOfStock {
            sku,
            requested,
            available,
        } => Err(inventory::Error::OutOfStock {
            sku,
            requested,
            available,
        }
        .into()),
        PlaceOrderOutcome::UnknownProduct { sku } => {
            let fields = body
                .lines
                .iter()
                .enumerate()
                .filter(|(_, line)| line.sku == sku.as_str())
                .map(|(i, _)| FieldError::new(format!("lines[{i}].sku"), "no such product"))
                .collect::<Vec<_>>();
            Err(ApiError::unprocessable(
                "unknown-product",
                "Unknown product",
                format!("no product with SKU {sku}"),
            )
            .with("sku", json!(sku.as_str()))
            .with("errors", json!(fields)))
        }
    }
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let not_found = || ApiError::not_found(format!("no order with id {id}"));
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let order = orders::get(state.fabric.connection(orders::SCHEMA)?, parsed)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(order))
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
            Error::Corrupt(_) | Error::Database(_) => ApiError::internal(&err),
        }
    }
}

impl From<PlaceOrderError> for ApiError {
    fn from(err: PlaceOrderError) -> Self {
        match err {
            PlaceOrderError::InvalidOrder(invalid) => {
                ApiError::unprocessable("invalid-order", "Invalid order", invalid.to_string())
            }
            PlaceOrderError::Inventory(err) => err.into(),
            PlaceOrderError::Orders(err) => err.into(),
            PlaceOrderError::UnitOfWork(err) => err.into(),
        }
    }
}
