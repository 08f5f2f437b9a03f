//! The catalog and stock levels: add a product, restock it, look it up.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use serde::Serialize;

use crate::entities::{products, stock_levels};
use crate::error::{Error, Result};
use crate::types::{Currency, Money, ProductName, Quantity, Sku};

/// A product to add to the catalog.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Its SKU, unique in the catalog.
    pub sku: Sku,
    /// Its display name.
    pub name: ProductName,
    /// Its unit price.
    pub price: Money,
    /// Units in stock to start with (may be zero).
    pub initial_stock: u32,
}

/// A product with its stock level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// Its SKU.
    pub sku: Sku,
    /// Its display name.
    pub name: String,
    /// Its unit price.
    pub price: Money,
    /// Units that can be reserved.
    pub available: i64,
    /// Units held by reservations.
    pub reserved: i64,
}

/// Adds a product and its stock level.
///
/// # Errors
/// [`Error::DuplicateSku`] if the SKU exists; [`Error::Database`] otherwise.
pub async fn add_product(
    db: &impl ConnectionTrait,
    product: &NewProduct,
    now: DateTime<Utc>,
) -> Result<Product> {
    let inserted = products::Entity::insert(products::ActiveModel {
        sku: Set(product.sku.as_str().to_owned()),
        name: Set(product.name.as_str().to_owned()),
        price_minor: Set(product.price.minor),
        currency: Set(product.price.currency.as_str().to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await;
    if let Err(err) = inserted {
        return Err(match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::DuplicateSku {
                sku: product.sku.clone(),
            },
            _ => Error::Database(err),
        });
    }
    stock_levels::Entity::insert(stock_levels::ActiveModel {
        sku: Set(product.sku.as_str().to_owned()),
        available: Set(i64::from(product.initial_stock)),
        reserved: Set(0),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(Product {
        sku: product.sku.clone(),
        name: product.name.as_str().to_owned(),
        price: product.price,
        available: i64::from(product.initial_stock),
        reserved: 0,
    })
}

/// Adds `quantity` units to a product's available stock.
///
/// # Errors
/// [`Error::UnknownProduct`], [`Error::StockOverflow`], or [`Error::Database`].
pub async fn restock(
    db: &impl ConnectionTrait,
    sku: &Sku,
    quantity: Quantity,
    now: DateTime<Utc>,
) -> Result<Product> {
    let quantity = i64::from(quantity.get());
    // Lock, decide, write: see `reserve` for why a guarded UPDATE alone is not enough.
    let stock = stock_levels::Entity::find_by_id(sku.as_str())
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| Error::UnknownProduct { sku: sku.clone() })?;
    if stock.available.checked_add(quantity).is_none() {
        return Err(Error::StockOverflow { sku: sku.clone() });
    }
    stock_levels::Entity::update_many()
        .col_expr(
            stock_levels::Column::Available,
            Expr::col(stock_levels::Column::Available).add(quantity),
        )
        .col_expr(stock_levels::Column::UpdatedAt, Expr::val(now))
        .filter(stock_levels::Column::Sku.eq(sku.as_str()))
        .exec(db)
        .await?;
    get(db, sku)
        .await?
        .ok_or_else(|| Error::UnknownProduct { sku: sku.clone() })
}

/// The product with `sku`, if any.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn get(db: &impl ConnectionTrait, sku: &Sku) -> Result<Option<Product>> {
    Ok(find_products(db, std::slice::from_ref(sku)).await?.pop())
}

/// The products among `skus` that exist, in SKU order.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn find_products(db: &impl ConnectionTrait, skus: &[Sku]) -> Result<Vec<Product>> {
    let rows = products::Entity::find()
        .find_also_related(stock_levels::Entity)
        .filter(products::Column::Sku.is_in(skus.iter().map(Sku::as_str)))
        .all(db)
        .await?;
    let mut found = rows
        .into_iter()
        .map(|(product, stock)| to_product(product, stock))
        .collect::<Result<Vec<_>>>()?;
    found.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(found)
}

/// Up to `limit` products in SKU order: those whose SKU starts with `sku_prefix`, after
/// the SKU `after` (the cursor of the page before). SKUs are compared and ordered as the
/// database compares them: by bytes on SQLite, by its collation on PostgreSQL, and
/// ignoring case with MariaDB's default collation (where SKUs are also unique ignoring
/// case).
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn list_products(
    db: &impl ConnectionTrait,
    sku_prefix: Option<&str>,
    after: Option<&Sku>,
    limit: u64,
) -> Result<Vec<Product>> {
    let mut query = products::Entity::find().find_also_related(stock_levels::Entity);
    if let Some(prefix) = sku_prefix.filter(|p| !p.is_empty()) {
        // A comparison rather than LIKE: SQLite's LIKE ignores case, `_` is a wildcard,
        // and SKUs are ASCII, so characters are bytes.
        let head = Func::cust("SUBSTR")
            .arg(Expr::col((products::Entity, products::Column::Sku)))
            .arg(1)
            .arg(i32::try_from(prefix.len()).unwrap_or(i32::MAX));
        query = query.filter(Expr::expr(head).eq(prefix));
    }
    if let Some(after) = after {
        query = query.filter(products::Column::Sku.gt(after.as_str()));
    }
    query
        .order_by_asc(products::Column::Sku)
        // PostgreSQL's LIMIT is a signed 64-bit integer.
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()))
        .all(db)
        .await?
        .into_iter()
        .map(|(product, stock)| to_product(product, stock))
        .collect()
}

fn to_product(row: products::Model, stock: Option<stock_levels::Model>) -> Result<Product> {
    let corrupt = |what: &str| Error::Corrupt(format!("product {}: {what}", row.sku));
    let stock = stock.ok_or_else(|| corrupt("no stock level"))?;
    let currency = Currency::parse(&row.currency).map_err(|_| corrupt("bad currency"))?;
    Ok(Product {
        sku: Sku::parse(&row.sku).map_err(|_| corrupt("bad SKU"))?,
        price: Money::new(row.price_minor, currency).map_err(|_| corrupt("bad price"))?,
        name: row.name,
        available: stock.available,
        reserved: stock.reserved,
    })
}
