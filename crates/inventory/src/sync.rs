//! Product feeds: a vendor's catalog and stock, imported a chunk at a time. Each
//! version of a feed (the caller names it, e.g. by its content's hash) has a record of
//! how far it got and what it did, committed with each chunk, so an import killed at
//! any point and run again continues after its last committed chunk.
//!
//! A feed row's `stock` is the absolute number of units on hand, those reserved for
//! orders (held or committed) included: the import sets `available = stock − reserved`
//! under the stock row's lock, so a placement running beside it never oversells. A
//! row whose stock is below what is reserved is rejected and its product left as it
//! was. A SKU given more than once: the last row wins.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, extension::postgres::PgFunc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};
use serde::Serialize;

use crate::entities::{feed_imports, feed_rejects, products, stock_levels};
use crate::error::{Error, Result};
use crate::types::{Currency, Money, ProductName, Sku};

/// One row of a feed as read: text, before any check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedRow {
    /// Its line in the feed (the header is line 1).
    pub line: u64,
    /// The product's SKU.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Its unit price in minor units.
    pub price_minor: String,
    /// Its ISO 4217 currency.
    pub currency: String,
    /// Units on hand, reserved ones included.
    pub stock: String,
}

/// A feed row that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedProduct {
    line: u64,
    sku: Sku,
    name: ProductName,
    price: Money,
    stock: i64,
}

impl FeedRow {
    /// The row's product, or why it cannot be imported (naming the field).
    fn check(&self) -> std::result::Result<FeedProduct, String> {
        let field = |name: &str, err: crate::Invalid| format!("{name}: {err}");
        let sku = Sku::parse(&self.sku).map_err(|e| field("sku", e))?;
        let name = ProductName::parse(&self.name).map_err(|e| field("name", e))?;
        let currency = Currency::parse(&self.currency).map_err(|e| field("currency", e))?;
        let price_minor = self
            .price_minor
            .parse::<i64>()
            .map_err(|_| "price_minor: must be a whole number of minor units".to_owned())?;
        let price = Money::price(price_minor, currency).map_err(|e| field("price_minor", e))?;
        let stock = self
            .stock
            .parse::<u32>()
            .map_err(|_| format!("stock: must be a whole number from 0 to {}", u32::MAX))?;
        Ok(FeedProduct {
            line: self.line,
            sku,
            name,
            price,
            stock: i64::from(stock),
        })
    }
}

/// What a chunk (or a whole import) did with its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FeedCounts {
    /// New products.
    pub inserted: u64,
    /// Products whose name, price or stock changed.
    pub updated: u64,
    /// Products as the feed has them already.
    pub unchanged: u64,
    /// Rows not imported (see [`feed_rejects`]).
    pub rejected: u64,
}

/// A version of a feed, as far as it was imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedImport {
    /// The version's name (e.g. the hash of its content).
    pub feed: String,
    /// Where it was read from.
    pub source: String,
    /// Rows consumed so far: the next run starts after them.
    pub position: u64,
    /// What the rows consumed did.
    pub counts: FeedCounts,
    /// When its first run began.
    pub started_at: DateTime<Utc>,
    /// When its last chunk committed.
    pub updated_at: DateTime<Utc>,
    /// When its last row was imported, once it was.
    pub finished_at: Option<DateTime<Utc>>,
    /// What its server said of it, for a feed fetched over HTTP.
    pub validators: Validators,
}

/// A fetched feed's `ETag` and `Last-Modified`, as its server sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Validators {
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedReject {
    /// Its line in the feed.
    pub line: u64,
    /// Its SKU as given (control characters escaped), if it had one.
    pub sku: Option<String>,
    /// Why.
    pub reason: String,
}

/// The most characters of a rejected row's SKU that are kept.
const MAX_REJECT_SKU_CHARS: usize = 255;

/// The record of feed version `feed` from `source`, created if it is new.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn start_feed(
    db: &impl ConnectionTrait,
    feed: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<FeedImport> {
    let now = now.trunc_subsecs(6);
    feed_imports::Entity::insert(feed_imports::ActiveModel {
        feed: Set(feed.to_owned()),
        source: Set(source.to_owned()),
        position: Set(0),
        inserted: Set(0),
        updated: Set(0),
        unchanged: Set(0),
        rejected: Set(0),
        started_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
        etag: Set(None),
        last_modified: Set(None),
    })
    .on_conflict_do_nothing_on([feed_imports::Column::Feed])
    .exec_without_returning(db)
    .await?;
    feed_import(db, feed)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("feed import {feed} vanished")))
}

/// Imports `rows`, the rows of `feed` after its first `from` (whose record
/// [`start_feed`] made), and moves the feed's position past them: call it in one
/// transaction per chunk, so the rows and the position commit together. The feed's
/// record is locked first, so two imports of one feed queue up, and the second finds
/// the feed moved on.
///
/// # Errors
/// [`Error::FeedMoved`] when the feed is no longer at `from` (another import of it ran
/// meanwhile); [`Error::Database`], or [`Error::Corrupt`] for a row that breaks
/// invariants.
pub async fn import_feed_chunk(
    db: &impl ConnectionTrait,
    feed: &str,
    from: u64,
    rows: &[FeedRow],
    now: DateTime<Utc>,
) -> Result<FeedCounts> {
    let now = now.trunc_subsecs(6);
    let record = feed_imports::Entity::find_by_id(feed)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("feed import {feed} was never started")))?;
    if record.position.unsigned_abs() != from {
        return Err(Error::FeedMoved {
            feed: feed.to_owned(),
            expected: from,
            found: record.position.unsigned_abs(),
        });
    }
    let mut rejects: Vec<FeedReject> = Vec::new();
    let mut reject = |line: u64, sku: &str, reason: String| {
        rejects.push(FeedReject {
            line,
            sku: (!sku.is_empty())
                .then(|| sku.escape_default().take(MAX_REJECT_SKU_CHARS).collect()),
            reason,
        });
    };
    // The last row of a SKU wins.
    let mut wanted: HashMap<String, FeedProduct> = HashMap::new();
    for row in rows {
        match row.check() {
            Ok(product) => {
                if let Some(earlier) = wanted.insert(product.sku.as_str().to_owned(), product) {
                    reject(
                        earlier.line,
                        earlier.sku.as_str(),
                        format!("sku: given again on line {}, which is used", row.line),
                    );
                }
            }
            Err(reason) => reject(row.line, &row.sku, reason),
        }
    }
    let mut skus: Vec<String> = wanted.keys().cloned().collect();
    // In SKU order, as placements lock them, so the two cannot deadlock.
    skus.sort();
    let (stock, catalog) = current(db, &skus).await?;

    let mut counts = FeedCounts::default();
    let mut new_products = Vec::new();
    let mut changed_products = Vec::new();
    for sku in &skus {
        let product = &wanted[sku];
        match (catalog.get(sku), stock.get(sku)) {
            (Some((name, price_minor, currency)), Some(&(available_now, reserved))) => {
                if product.stock < reserved {
                    reject(
                        product.line,
                        sku,
                        format!(
                            "stock: {} is below the {} units reserved for orders",
                            product.stock, reserved
                        ),
                    );
                    continue;
                }
                let available = product.stock - reserved;
                let same = name == product.name.as_str()
                    && *price_minor == product.price.minor
                    && currency == product.price.currency.as_str()
                    && available_now == available;
                if same {
                    counts.unchanged += 1;
                    continue;
                }
                counts.updated += 1;
                changed_products.push((product, available));
            }
            (None, None) => {
                counts.inserted += 1;
                new_products.push((product, product.stock));
            }
            _ => {
                return Err(Error::Corrupt(format!(
                    "product {sku} has a catalog row or a stock row, not both"
                )));
            }
        }
    }
    write_products(db, &new_products, &changed_products, now).await?;
    counts.rejected = rejects.len() as u64;
    if !rejects.is_empty() {
        feed_rejects::Entity::insert_many(rejects.into_iter().map(|reject| {
            feed_rejects::ActiveModel {
                feed: Set(feed.to_owned()),
                line: Set(i64::try_from(reject.line).unwrap_or(i64::MAX)),
                sku: Set(reject.sku),
                reason: Set(reject.reason),
            }
        }))
        .on_conflict_do_nothing_on([feed_rejects::Column::Feed, feed_rejects::Column::Line])
        .exec_without_returning(db)
        .await?;
    }
    let add = |column: feed_imports::Column, n: u64| {
        Expr::col(column).add(i64::try_from(n).unwrap_or(i64::MAX))
    };
    feed_imports::Entity::update_many()
        .col_expr(
            feed_imports::Column::Position,
            add(feed_imports::Column::Position, rows.len() as u64),
        )
        .col_expr(
            feed_imports::Column::Inserted,
            add(feed_imports::Column::Inserted, counts.inserted),
        )
        .col_expr(
            feed_imports::Column::Updated,
            add(feed_imports::Column::Updated, counts.updated),
        )
        .col_expr(
            feed_imports::Column::Unchanged,
            add(feed_imports::Column::Unchanged, counts.unchanged),
        )
        .col_expr(
            feed_imports::Column::Rejected,
            add(feed_imports::Column::Rejected, counts.rejected),
        )
        .col_expr(feed_imports::Column::UpdatedAt, Expr::val(now))
        .filter(feed_imports::Column::Feed.eq(feed))
        .exec(db)
        .await?;
    Ok(counts)
}

/// Rows per statement where rows are bound one value at a time (SQLite allows 32,766
/// bound values in a statement, MySQL 65,535); PostgreSQL gets each column as one
/// array instead.
const ROWS_PER_STATEMENT: usize = 1_000;

/// A product's stock as locked: units available and reserved.
type Level = (i64, i64);
/// A product as listed: name, price in minor units, currency.
type Listed = (String, i64, String);

/// The stock (locked, in SKU order) and catalog entries of `skus` (sorted), by SKU.
async fn current(
    db: &impl ConnectionTrait,
    skus: &[String],
) -> Result<(HashMap<String, Level>, HashMap<String, Listed>)> {
    let (mut stock, mut catalog) = (HashMap::new(), HashMap::new());
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    let batches: Vec<&[String]> = if postgres {
        vec![skus]
    } else {
        skus.chunks(ROWS_PER_STATEMENT).collect()
    };
    for batch in batches {
        let among = |column: Expr| -> sea_orm::sea_query::SimpleExpr {
            if postgres {
                column.eq(PgFunc::any(Expr::val(batch.to_vec())))
            } else {
                column.is_in(batch.iter().map(String::as_str))
            }
        };
        let rows: Vec<(String, i64, i64)> = stock_levels::Entity::find()
            .select_only()
            .columns([
                stock_levels::Column::Sku,
                stock_levels::Column::Available,
                stock_levels::Column::Reserved,
            ])
            .filter(among(Expr::col(stock_levels::Column::Sku)))
            .order_by_asc(stock_levels::Column::Sku)
            .lock_exclusive()
            .into_tuple()
            .all(db)
            .await?;
        stock.extend(
            rows.into_iter()
                .map(|(sku, available, reserved)| (sku, (available, reserved))),
        );
        let rows: Vec<(String, String, i64, String)> = products::Entity::find()
            .select_only()
            .columns([
                products::Column::Sku,
                products::Column::Name,
                products::Column::PriceMinor,
                products::Column::Currency,
            ])
            .filter(among(Expr::col(products::Column::Sku)))
            .into_tuple()
            .all(db)
            .await?;
        catalog.extend(
            rows.into_iter()
                .map(|(sku, name, price, currency)| (sku, (name, price, currency))),
        );
    }
    Ok((stock, catalog))
}

/// Inserts the new products with their stock and updates the changed ones (each with
/// the units it has available).
async fn write_products(
    db: &impl ConnectionTrait,
    new: &[(&FeedProduct, i64)],
    changed: &[(&FeedProduct, i64)],
    now: DateTime<Utc>,
) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        return write_products_postgres(db, new, changed, now).await;
    }
    let catalog_row = |product: &FeedProduct| products::ActiveModel {
        sku: Set(product.sku.as_str().to_owned()),
        name: Set(product.name.as_str().to_owned()),
        price_minor: Set(product.price.minor),
        currency: Set(product.price.currency.as_str().to_owned()),
        created_at: Set(now),
    };
    let stock_row = |product: &FeedProduct, available: i64| stock_levels::ActiveModel {
        sku: Set(product.sku.as_str().to_owned()),
        available: Set(available),
        reserved: Set(0),
        updated_at: Set(now),
    };
    for batch in new.chunks(ROWS_PER_STATEMENT) {
        products::Entity::insert_many(batch.iter().map(|(product, _)| catalog_row(product)))
            .exec_without_returning(db)
            .await?;
        stock_levels::Entity::insert_many(
            batch
                .iter()
                .map(|(product, available)| stock_row(product, *available)),
        )
        .exec_without_returning(db)
        .await?;
    }
    for batch in changed.chunks(ROWS_PER_STATEMENT) {
        products::Entity::insert_many(batch.iter().map(|(product, _)| catalog_row(product)))
            .on_conflict(
                OnConflict::column(products::Column::Sku)
                    .update_columns([
                        products::Column::Name,
                        products::Column::PriceMinor,
                        products::Column::Currency,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        // `reserved` is not among the updated columns: it stays as locked.
        stock_levels::Entity::insert_many(
            batch
                .iter()
                .map(|(product, available)| stock_row(product, *available)),
        )
        .on_conflict(
            OnConflict::column(stock_levels::Column::Sku)
                .update_columns([
                    stock_levels::Column::Available,
                    stock_levels::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// [`write_products`] on PostgreSQL: one statement per table and kind, each column
/// bound as one array and read back with `unnest`, so a chunk costs four statements
/// whatever its size, with nothing to plan per row.
async fn write_products_postgres(
    db: &impl ConnectionTrait,
    new: &[(&FeedProduct, i64)],
    changed: &[(&FeedProduct, i64)],
    now: DateTime<Utc>,
) -> Result<()> {
    type Columns = (Vec<String>, Vec<String>, Vec<i64>, Vec<String>, Vec<i64>);
    let columns = |rows: &[(&FeedProduct, i64)]| -> Columns {
        let mut c: Columns = Default::default();
        for (product, available) in rows {
            c.0.push(product.sku.as_str().to_owned());
            c.1.push(product.name.as_str().to_owned());
            c.2.push(product.price.minor);
            c.3.push(product.price.currency.as_str().to_owned());
            c.4.push(*available);
        }
        c
    };
    let run = async |sql: &str, values: Vec<Value>| -> Result<()> {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
        Ok(())
    };
    if !new.is_empty() {
        let (skus, names, prices, currencies, available) = columns(new);
        run(
            "INSERT INTO inventory.products (sku, name, price_minor, currency, created_at) \
             SELECT sku, name, price_minor, currency, $5 \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) \
             AS feed (sku, name, price_minor, currency)",
            vec![
                skus.clone().into(),
                names.into(),
                prices.into(),
                currencies.into(),
                now.into(),
            ],
        )
        .await?;
        run(
            "INSERT INTO inventory.stock_levels (sku, available, reserved, updated_at) \
             SELECT sku, available, 0, $3 FROM unnest($1::text[], $2::int8[]) \
             AS feed (sku, available)",
            vec![skus.into(), available.into(), now.into()],
        )
        .await?;
    }
    if !changed.is_empty() {
        let (skus, names, prices, currencies, available) = columns(changed);
        run(
            "UPDATE inventory.products AS p \
             SET name = feed.name, price_minor = feed.price_minor, currency = feed.currency \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) \
             AS feed (sku, name, price_minor, currency) WHERE p.sku = feed.sku",
            vec![
                skus.clone().into(),
                names.into(),
                prices.into(),
                currencies.into(),
            ],
        )
        .await?;
        run(
            "UPDATE inventory.stock_levels AS s SET available = feed.available, updated_at = $3 \
             FROM unnest($1::text[], $2::int8[]) AS feed (sku, available) \
             WHERE s.sku = feed.sku",
            vec![skus.into(), available.into(), now.into()],
        )
        .await?;
    }
    Ok(())
}

/// Marks feed version `feed` imported to its end.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a feed that was never started.
pub async fn finish_feed(
    db: &impl ConnectionTrait,
    feed: &str,
    now: DateTime<Utc>,
) -> Result<FeedImport> {
    feed_imports::Entity::update_many()
        .col_expr(
            feed_imports::Column::FinishedAt,
            Expr::val(Some(now.trunc_subsecs(6))),
        )
        .filter(feed_imports::Column::Feed.eq(feed))
        .filter(feed_imports::Column::FinishedAt.is_null())
        .exec(db)
        .await?;
    feed_import(db, feed)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("feed import {feed} was never started")))
}

/// The record of feed version `feed`, if it was ever imported.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn feed_import(db: &impl ConnectionTrait, feed: &str) -> Result<Option<FeedImport>> {
    feed_imports::Entity::find_by_id(feed)
        .one(db)
        .await?
        .map(to_feed_import)
        .transpose()
}

/// Records what the server of feed version `feed` said of it (at most 255 characters
/// of each; longer ones are not kept, so they are never sent back cut short).
///
/// # Errors
/// [`Error::Database`].
pub async fn set_validators(
    db: &impl ConnectionTrait,
    feed: &str,
    validators: &Validators,
) -> Result<()> {
    let keep = |v: &Option<String>| v.clone().filter(|v| v.chars().count() <= 255);
    feed_imports::Entity::update_many()
        .col_expr(
            feed_imports::Column::Etag,
            Expr::val(keep(&validators.etag)),
        )
        .col_expr(
            feed_imports::Column::LastModified,
            Expr::val(keep(&validators.last_modified)),
        )
        .filter(feed_imports::Column::Feed.eq(feed))
        .exec(db)
        .await?;
    Ok(())
}

/// The last finished import from `source`, if any: the version to ask the server about.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn last_import_from(
    db: &impl ConnectionTrait,
    source: &str,
) -> Result<Option<FeedImport>> {
    feed_imports::Entity::find()
        .filter(feed_imports::Column::Source.eq(source))
        .filter(feed_imports::Column::FinishedAt.is_not_null())
        .order_by_desc(feed_imports::Column::FinishedAt)
        .one(db)
        .await?
        .map(to_feed_import)
        .transpose()
}

/// The feed imports that ran last, newest first, at most `limit`.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn recent_feed_imports(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<FeedImport>> {
    feed_imports::Entity::find()
        .order_by_desc(feed_imports::Column::UpdatedAt)
        .order_by_asc(feed_imports::Column::Feed)
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()))
        .all(db)
        .await?
        .into_iter()
        .map(to_feed_import)
        .collect()
}

/// Up to `limit` rejected rows of feed version `feed`, by line, after line `after`.
///
/// # Errors
/// [`Error::Database`].
pub async fn feed_rejects(
    db: &impl ConnectionTrait,
    feed: &str,
    after: u64,
    limit: u64,
) -> Result<Vec<FeedReject>> {
    Ok(feed_rejects::Entity::find()
        .filter(feed_rejects::Column::Feed.eq(feed))
        .filter(feed_rejects::Column::Line.gt(i64::try_from(after).unwrap_or(i64::MAX)))
        .order_by_asc(feed_rejects::Column::Line)
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| FeedReject {
            line: row.line.unsigned_abs(),
            sku: row.sku,
            reason: row.reason,
        })
        .collect())
}

fn to_feed_import(row: feed_imports::Model) -> Result<FeedImport> {
    let count = |n: i64| {
        u64::try_from(n).map_err(|_| Error::Corrupt(format!("feed import {}: a count", row.feed)))
    };
    Ok(FeedImport {
        position: count(row.position)?,
        counts: FeedCounts {
            inserted: count(row.inserted)?,
            updated: count(row.updated)?,
            unchanged: count(row.unchanged)?,
            rejected: count(row.rejected)?,
        },
        feed: row.feed,
        source: row.source,
        started_at: row.started_at,
        updated_at: row.updated_at,
        finished_at: row.finished_at,
        validators: Validators {
            etag: row.etag,
            last_modified: row.last_modified,
        },
    })
}
