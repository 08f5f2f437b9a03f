//! Storing orders and moving them through the lifecycle.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use uuid::Uuid;

use crate::entities::{order_lines, orders};
use crate::error::{Error, Result};
use crate::order::{NewOrder, Order, OrderLine, OrderStatus};

/// Stores `order` under `id` as pending.
///
/// # Errors
/// [`Error::DuplicateOrder`] if `id` is taken; [`Error::Database`] otherwise.
pub async fn create(
    db: &impl ConnectionTrait,
    id: Uuid,
    order: &NewOrder,
    now: DateTime<Utc>,
) -> Result<Order> {
    let inserted = orders::Entity::insert(orders::ActiveModel {
        id: Set(id),
        customer_id: Set(order.customer_id.as_str().to_owned()),
        status: Set(OrderStatus::Pending.as_str().to_owned()),
        currency: Set(order.currency.clone()),
        total_minor: Set(order.total_minor),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await;
    if let Err(err) = inserted {
        return Err(match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::DuplicateOrder { id },
            _ => Error::Database(err),
        });
    }
    let lines = order
        .lines
        .iter()
        .zip(1..)
        .map(|(line, line_no)| order_lines::ActiveModel {
            order_id: Set(id),
            line_no: Set(line_no),
            sku: Set(line.sku.clone()),
            quantity: Set(i64::from(line.quantity)),
            unit_price_minor: Set(line.unit_price_minor),
            line_total_minor: Set(line.line_total_minor),
        });
    order_lines::Entity::insert_many(lines)
        .exec_without_returning(db)
        .await?;
    Ok(Order {
        id,
        customer_id: order.customer_id.as_str().to_owned(),
        status: OrderStatus::Pending,
        currency: order.currency.clone(),
        total_minor: order.total_minor,
        lines: order.lines.clone(),
        created_at: now,
        updated_at: now,
    })
}

/// The order with `id`, if any.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for rows that break invariants.
pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Order>> {
    let Some(row) = orders::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let lines = order_lines::Entity::find()
        .filter(order_lines::Column::OrderId.eq(id))
        .order_by_asc(order_lines::Column::LineNo)
        .all(db)
        .await?;
    to_order(row, lines).map(Some)
}

/// Confirms a pending order.
///
/// # Errors
/// [`Error::UnknownOrder`], [`Error::InvalidTransition`], or [`Error::Database`].
pub async fn confirm(db: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<Order> {
    transition(db, id, OrderStatus::Confirmed, now).await
}

/// Cancels a pending or confirmed order.
///
/// # Errors
/// [`Error::UnknownOrder`], [`Error::InvalidTransition`], or [`Error::Database`].
pub async fn cancel(db: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<Order> {
    transition(db, id, OrderStatus::Cancelled, now).await
}

/// Moves an order to `to` if the lifecycle allows it from its current status.
async fn transition(
    db: &impl ConnectionTrait,
    id: Uuid,
    to: OrderStatus,
    now: DateTime<Utc>,
) -> Result<Order> {
    // Lock, decide, write: a concurrent change waits on the row lock, so the lifecycle
    // check sees the status this update replaces.
    let row = orders::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(Error::UnknownOrder { id })?;
    let from = OrderStatus::parse(&row.status)
        .ok_or_else(|| Error::Corrupt(format!("order {id}: unknown status")))?;
    if !from.can_become(to) {
        return Err(Error::InvalidTransition { id, from, to });
    }
    orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::val(to.as_str()))
        .col_expr(orders::Column::UpdatedAt, Expr::val(now))
        .filter(orders::Column::Id.eq(id))
        .exec(db)
        .await?;
    get(db, id).await?.ok_or(Error::UnknownOrder { id })
}

fn to_order(row: orders::Model, lines: Vec<order_lines::Model>) -> Result<Order> {
    let corrupt = |what: &str| Error::Corrupt(format!("order {}: {what}", row.id));
    let lines = lines
        .into_iter()
        .map(|line| {
            Ok(OrderLine {
                quantity: u32::try_from(line.quantity).map_err(|_| corrupt("bad quantity"))?,
                sku: line.sku,
                unit_price_minor: line.unit_price_minor,
                line_total_minor: line.line_total_minor,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Order {
        id: row.id,
        status: OrderStatus::parse(&row.status).ok_or_else(|| corrupt("unknown status"))?,
        customer_id: row.customer_id,
        currency: row.currency,
        total_minor: row.total_minor,
        lines,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
