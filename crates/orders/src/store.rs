//! Storing orders and moving them through the lifecycle.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use uuid::Uuid;

use crate::entities::{order_lines, orders};
use crate::error::{Error, Result};
use crate::order::{CustomerId, NewOrder, Order, OrderLine, OrderStatus};
use crate::refund::RefundPlan;

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
            refunded_quantity: Set(0),
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

/// Which orders [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only this customer's orders.
    pub customer_id: Option<CustomerId>,
    /// Only orders older than this one (its id): the cursor of the page before.
    pub before: Option<Uuid>,
}

/// Up to `limit` orders that pass `filter`, newest first (order ids grow with time),
/// each with its lines.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for rows that break invariants.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &OrderFilter,
    limit: u64,
) -> Result<Vec<Order>> {
    let mut query = orders::Entity::find();
    if let Some(status) = filter.status {
        query = query.filter(orders::Column::Status.eq(status.as_str()));
    }
    if let Some(customer_id) = &filter.customer_id {
        query = query.filter(orders::Column::CustomerId.eq(customer_id.as_str()));
    }
    if let Some(before) = filter.before {
        query = query.filter(orders::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(orders::Column::Id)
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()))
        .all(db)
        .await?;
    let lines = order_lines::Entity::find()
        .filter(order_lines::Column::OrderId.is_in(rows.iter().map(|row| row.id)))
        .order_by_asc(order_lines::Column::LineNo)
        .all(db)
        .await?;
    let mut lines_of: HashMap<Uuid, Vec<order_lines::Model>> = HashMap::new();
    for line in lines {
        lines_of.entry(line.order_id).or_default().push(line);
    }
    rows.into_iter()
        .map(|row| {
            let lines = lines_of.remove(&row.id).unwrap_or_default();
            to_order(row, lines)
        })
        .collect()
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

/// Records the refund of `plan`'s units: each line's refunded units grow by the plan's,
/// and the order becomes `refunded` when no unit is left, `partly_refunded` otherwise.
/// The plan is checked again against the order as it stands, under its lock.
///
/// # Errors
/// [`Error::UnknownOrder`]; [`Error::RefundRefused`] when the order no longer allows
/// the plan (refunded or changed since); [`Error::Database`] otherwise.
pub async fn record_refund(
    db: &impl ConnectionTrait,
    id: Uuid,
    plan: &RefundPlan,
    now: DateTime<Utc>,
) -> Result<Order> {
    orders::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(Error::UnknownOrder { id })?;
    let order = get(db, id).await?.ok_or(Error::UnknownOrder { id })?;
    let asked: Vec<(String, u32)> = plan
        .lines
        .iter()
        .map(|line| (line.sku.clone(), line.quantity))
        .collect();
    let again = order.refund(Some(&asked))?;
    if again.lines != plan.lines {
        return Err(Error::Corrupt(format!(
            "order {id}: the refund's lines are not the order's"
        )));
    }
    for line in &plan.lines {
        order_lines::Entity::update_many()
            .col_expr(
                order_lines::Column::RefundedQuantity,
                Expr::col(order_lines::Column::RefundedQuantity).add(i64::from(line.quantity)),
            )
            .filter(order_lines::Column::OrderId.eq(id))
            .filter(order_lines::Column::LineNo.eq(i32::try_from(line.line_no).unwrap_or(i32::MAX)))
            .exec(db)
            .await?;
    }
    let left: u32 = order
        .lines
        .iter()
        .map(crate::OrderLine::refundable)
        .sum::<u32>()
        - plan.lines.iter().map(|line| line.quantity).sum::<u32>();
    let to = if left == 0 {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartlyRefunded
    };
    orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::val(to.as_str()))
        .col_expr(orders::Column::UpdatedAt, Expr::val(now))
        .filter(orders::Column::Id.eq(id))
        .exec(db)
        .await?;
    get(db, id).await?.ok_or(Error::UnknownOrder { id })
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
            let quantity = u32::try_from(line.quantity).map_err(|_| corrupt("bad quantity"))?;
            let refunded_quantity = u32::try_from(line.refunded_quantity)
                .ok()
                .filter(|&refunded| refunded <= quantity)
                .ok_or_else(|| corrupt("bad refunded quantity"))?;
            Ok(OrderLine {
                quantity,
                sku: line.sku,
                unit_price_minor: line.unit_price_minor,
                line_total_minor: line.line_total_minor,
                refunded_quantity,
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
