//! `/api/products`: add, list, show and restock products.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use inventory::{Currency, Money, NewProduct, Product, ProductName, Quantity, Sku};
use orchestration::{FabricError, UnitOfWorkError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, Body, FieldError, Params, ProblemType, check};
use super::page::{self, Page};

/// The catalog and its stock (the `inventory` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(restock))
}

/// A new product.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateProduct {
    /// 1 to 64 letters, digits, `-`, `_` and `.`; unique.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "WIDGET-1")]
    sku: String,
    /// 1 to 200 characters, not blank, no control characters.
    #[schema(min_length = 1, max_length = 200, example = "Widget")]
    name: String,
    /// The unit price in minor units (cents), above zero.
    #[schema(minimum = 1, example = 1250)]
    price_minor: i64,
    /// An ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    currency: String,
    /// Units in stock to start with.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000, default = 0)]
    stock: i64,
}

/// Units to add to a product's stock.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Restock {
    #[schema(minimum = 1, maximum = 1_000_000)]
    quantity: i64,
}

/// A product with its stock.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductView {
    #[schema(example = "WIDGET-1")]
    sku: String,
    name: String,
    /// The unit price in minor units.
    price_minor: i64,
    currency: String,
    /// Units that can be ordered.
    available: i64,
    /// Units held for orders being placed.
    reserved: i64,
}

/// `GET /api/products`: taken as text, so that a bad value is reported against its
/// parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListProducts {
    /// Only products whose SKU starts with this.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku_prefix: Option<String>,
    /// Products per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    cursor: Option<String>,
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

/// Adds a product with its starting stock.
#[utoipa::path(
    post,
    path = "/api/products",
    tag = "products",
    operation_id = "create_product",
    security(("session" = ["catalog.write"])),
    request_body = CreateProduct,
    responses(
        (status = 201, description = "Added", body = ProductView,
            headers(("Location" = String, description = "The product's URL"))),
        (status = 409, description = "`duplicate-sku`: a product with this SKU exists"),
        (status = 422, description = "`validation`: fields that break a rule, each named in `errors`"),
    ),
)]
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
    let now = state.now();
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

/// Lists products in SKU order, a page at a time.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "products",
    operation_id = "list_products",
    security(("session" = [])),
    params(ListProducts),
    responses(
        (status = 200, description = "One page", body = Page<ProductView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Params(query): Params<ListProducts>,
) -> Result<Json<Page<ProductView>>, ApiError> {
    let mut errors = Vec::new();
    let limit = page::limit(&mut errors, query.limit.as_deref());
    if let Some(prefix) = &query.sku_prefix {
        check(&mut errors, "sku_prefix", Sku::parse(prefix));
    }
    let cursor = query.cursor.as_deref().and_then(|c| {
        check(
            &mut errors,
            "cursor",
            Sku::parse(c).map_err(|_| "is not a cursor of this collection"),
        )
    });
    let Some(limit) = limit.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid_query(errors));
    };
    let products = inventory::list_products(
        state.fabric.connection(inventory::SCHEMA)?,
        query.sku_prefix.as_deref(),
        cursor.as_ref(),
        limit + 1,
    )
    .await?;
    Ok(Json(Page::new(
        products.into_iter().map(ProductView::from).collect(),
        limit,
        "/api/products",
        &[("sku_prefix", query.sku_prefix.as_deref())],
        |product| product.sku.clone(),
    )))
}

/// Shows one product with its stock.
#[utoipa::path(
    get,
    path = "/api/products/{sku}",
    tag = "products",
    operation_id = "show_product",
    security(("session" = [])),
    params(("sku" = String, Path, description = "The product's SKU")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, description = "`not-found`: no product with this SKU"),
    ),
)]
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

/// Adds units to a product's stock.
#[utoipa::path(
    post,
    path = "/api/products/{sku}/restock",
    tag = "products",
    operation_id = "restock_product",
    security(("session" = ["stock.write"])),
    params(("sku" = String, Path, description = "The product's SKU")),
    request_body = Restock,
    responses(
        (status = 200, description = "Restocked", body = ProductView),
        (status = 404, description = "`not-found`: no product with this SKU"),
        (status = 422, description = "`validation`: a bad quantity; `stock-overflow`: the stock would pass its maximum"),
    ),
)]
pub(crate) async fn restock(
    State(state): State<AppState>,
    Path(sku): Path<String>,
    Body(body): Body<Restock>,
) -> Result<Json<ProductView>, ApiError> {
    let sku =
        Sku::parse(&sku).map_err(|_| ApiError::not_found(format!("no product with SKU {sku}")))?;
    let quantity = Quantity::new(body.quantity)
        .map_err(|e| ApiError::validation(vec![FieldError::new("quantity", e)]))?;
    let now = state.now();
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
            } => ApiError::conflict(ProblemType::OutOfStock, "Out of stock", err.to_string())
                .with("sku", json!(sku.as_str()))
                .with("requested", json!(requested))
                .with("available", json!(available)),
            Error::UnknownProduct { .. } | Error::UnknownReservation { .. } => {
                ApiError::not_found(err.to_string())
            }
            Error::DuplicateSku { ref sku } => {
                ApiError::conflict(ProblemType::DuplicateSku, "Product exists", err.to_string())
                    .with("sku", json!(sku.as_str()))
            }
            Error::ReservationNotHeld { .. } => ApiError::conflict(
                ProblemType::ReservationNotHeld,
                "Reservation not held",
                err.to_string(),
            ),
            Error::StockOverflow { .. } => ApiError::unprocessable(
                ProblemType::StockOverflow,
                "Stock level too large",
                err.to_string(),
            ),
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::failure::is_unavailable(cause))
            }
            // Only a refund returns committed stock, inside its saga.
            // Nor does a route import feeds.
            Error::NotCommitted { .. } | Error::FeedMoved { .. } | Error::Corrupt(_) => {
                ApiError::internal(&err)
            }
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
