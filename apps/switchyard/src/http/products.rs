//! `/api/products`: add, show and restock products.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use inventory::{Currency, Money, NewProduct, Product, ProductName, Quantity, Sku};
use orchestration::{FabricError, UnitOfWorkError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, Body, FieldError, check};

/// `POST /api/products`.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateProduct {
    sku: String,
    name: String,
    price_minor: i64,
    currency: String,
    #[serde(default)]
    stock: i64,
}

/// `POST /api/products/{sku}/restock`.
#[derive(Debug, Deserialize)]
pub(crate) struct Restock {
    quantity: i64,
}

/// A product as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ProductView {
    sku: String,
    name: String,
    price_minor: i64,
    currency: String,
    available: i64,
    reserved: i64,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            sku: p.sku.to_string(),
            name: p.name,
            price_minor: p.price.minor,
            currency: p.price.currency.to_string(),
            available: p.available,
            reserved: p.reserved,
        }
    }
}

/// The most units a product may start with.
const MAX_INITIAL_STOCK: i64 = 1_000_000_000;

fn parse_new_product(body: &CreateProduct) -> Result<NewProduct, ApiError> {
    let mut errors = Vec::new();
    let sku = check(&mut errors, "sku", Sku::parse(&body.sku));
    let name = check(&mut errors, "name", ProductName::parse(&body.name));
    let currency = check(&mut errors, "currency", Currency::parse(&body.currency));
    let price = currency.and_then(|c| {
        check(
            &mut errors,
            "price_minor",
            Money::price(body.price_minor, c),
        )
    });
    let stock = u32::try_from(body.stock)
        .ok()
        .filter(|s| i64::from(*s) <= MAX_INITIAL_STOCK);
    if stock.is_none() {
        errors.push(FieldError::new(
            "stock",
            format!("must be between 0 and {MAX_INITIAL_STOCK}"),
        ));
    }
    match (sku, name, price, stock) {
        (Some(sku), Some(name), Some(price), Some(initial_stock)) if errors.is_empty() => {
            Ok(NewProduct {
                sku,
                name,
                price,
                initial_stock,
            })
        }
        _ => Err(ApiError::validation(errors)),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateProduct>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<ProductView>,
    ),
    ApiError,
> {
    let new_product = parse_new_product(&body)?;
    let now = super::now();
    let added = state
        .fabric
        .unit_of_work("add_product")
        .run(async |uow| -> Result<_, ApiError> {
            uow.step(inventory::SCHEMA, "add_product", async |tx| {
                inventory::add_product(tx, &new_product, now).await
            })
            .await
        })
        .await?;
    let location = format!("/api/products/{}", added.value.sku);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(added.value.into()),
    ))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let not_found = || ApiError::not_found(format!("no product with SKU {sku}"));
    let parsed = Sku::parse(&sku).map_err(|_| not_found())?;
    let product = inventory::get(state.fabric.connection(inventory::SCHEMA)?, &parsed)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(product.into()))
}

pub(crate) async fn restock(
    State(state): State<AppState>,
    Path(sku): Path<String>,
    Body(body): Body<Restock>,
) -> Result<Json<ProductView>, ApiError> {
    let sku =
        Sku::parse(&sku).map_err(|_| ApiError::not_found(format!("no product with SKU {sku}")))?;
    let quantity = Quantity::new(body.quantity)
        .map_err(|e| ApiError::validation(vec![FieldError::new("quantity", e)]))?;
    let now = super::now();
    let restocked = state
        .fabric
        .unit_of_work("restock")
        .run(async |uow| -> Result<_, ApiError> {
            uow.step(inventory::SCHEMA, "restock", async |tx| {
                inventory::restock(tx, &sku, quantity, now).await
            })
            .await
        })
        .await?;
    Ok(Json(restocked.value.into()))
}

impl From<inventory::Error> for ApiError {
    fn from(err: inventory::Error) -> Self {
        use inventory::Error;
        match err {
            Error::OutOfStock {
                ref sku,
                requested,
                available,
            } => ApiError::conflict("out-of-stock", "Out of stock", err.to_string())
                .with("sku", json!(sku.as_str()))
                .with("requested", json!(requested))
                .with("available", json!(available)),
            Error::UnknownProduct { .. } | Error::UnknownReservation { .. } => {
                ApiError::not_found(err.to_string())
            }
            Error::DuplicateSku { ref sku } => {
                ApiError::conflict("duplicate-sku", "Product exists", err.to_string())
                    .with("sku", json!(sku.as_str()))
            }
            Error::ReservationNotHeld { .. } => ApiError::conflict(
                "reservation-not-held",
                "Reservation not held",
                err.to_string(),
            ),
            Error::StockOverflow { .. } => {
                ApiError::unprocessable("stock-overflow", "Stock level too large", err.to_string())
            }
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::is_unavailable(cause))
            }
            Error::Corrupt(_) => ApiError::internal(&err),
        }
    }
}

impl From<UnitOfWorkError> for ApiError {
    fn from(err: UnitOfWorkError) -> Self {
        ApiError::failure(&err, err.is_unavailable())
    }
}

impl From<FabricError> for ApiError {
    fn from(err: FabricError) -> Self {
        ApiError::internal(&err)
    }
}
