//! Reservations: stock held for a caller's reference, never more than is available.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::{reservations, stock_levels};
use crate::error::{Error, Result};
use crate::types::{Quantity, Sku};

/// Whether a reservation still holds its stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// The stock is held until the reservation expires.
    Held,
    /// The stock stays reserved for a confirmed order: the hold no longer expires and
    /// cannot be released.
    Committed,
    /// The stock went back to available.
    Released,
}

impl ReservationStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Released => "released",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "held" => Some(Self::Held),
            "committed" => Some(Self::Committed),
            "released" => Some(Self::Released),
            _ => None,
        }
    }
}

/// Stock held for a reference (for example an order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// Its id.
    pub id: Uuid,
    /// The product.
    pub sku: Sku,
    /// Units held.
    pub quantity: u32,
    /// Whether it still holds them.
    pub status: ReservationStatus,
    /// The caller's reference.
    pub reference: String,
    /// When the hold lapses, while it is held (a committed reservation never lapses).
    pub expires_at: DateTime<Utc>,
}

/// Holds `quantity` units of `sku` for `reference` until `expires_at`.
///
/// Never oversells: the stock row is locked before the decision, so concurrent
/// reservations of one product cannot both take the last units.
///
/// # Errors
/// [`Error::OutOfStock`], [`Error::UnknownProduct`], or [`Error::Database`].
pub async fn reserve(
    db: &impl ConnectionTrait,
    sku: &Sku,
    quantity: Quantity,
    reference: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Reservation> {
    let units = i64::from(quantity.get());
    // Lock the stock row, decide, then update it. The lock (FOR UPDATE on PostgreSQL
    // and MySQL; SQLite's IMMEDIATE transaction already holds the write lock) makes
    // concurrent reservations of one product queue up, so none can take units another
    // has taken, and the available count reported on refusal is the current one.
    let stock = stock_levels::Entity::find_by_id(sku.as_str())
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| Error::UnknownProduct { sku: sku.clone() })?;
    if stock.available < units {
        return Err(Error::OutOfStock {
            sku: sku.clone(),
            requested: quantity.get(),
            available: stock.available,
        });
    }
    stock_levels::Entity::update_many()
        .col_expr(
            stock_levels::Column::Available,
            Expr::col(stock_levels::Column::Available).sub(units),
        )
        .col_expr(
            stock_levels::Column::Reserved,
            Expr::col(stock_levels::Column::Reserved).add(units),
        )
        .col_expr(stock_levels::Column::UpdatedAt, Expr::val(now))
        .filter(stock_levels::Column::Sku.eq(sku.as_str()))
        .exec(db)
        .await?;
    let reservation = Reservation {
        id: Uuid::now_v7(),
        sku: sku.clone(),
        quantity: quantity.get(),
        status: ReservationStatus::Held,
        reference: reference.to_owned(),
        expires_at,
    };
    reservations::Entity::insert(reservations::ActiveModel {
        id: Set(reservation.id),
        sku: Set(sku.as_str().to_owned()),
        quantity: Set(units),
        status: Set(ReservationStatus::Held.as_str().to_owned()),
        reference: Set(reservation.reference.clone()),
        expires_at: Set(expires_at),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(reservation)
}

/// Returns a held reservation's units to available stock.
///
/// # Errors
/// [`Error::UnknownReservation`], [`Error::ReservationNotHeld`] (already released or
/// committed), or [`Error::Database`].
pub async fn release(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Reservation> {
    // Lock, decide, write: two concurrent releases queue on the row lock and the
    // second sees the first's change, so the units are returned once.
    let row = reservations::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(Error::UnknownReservation { id })?;
    if row.status != ReservationStatus::Held.as_str() {
        return Err(Error::ReservationNotHeld { id });
    }
    reservations::Entity::update_many()
        .col_expr(
            reservations::Column::Status,
            Expr::val(ReservationStatus::Released.as_str()),
        )
        .col_expr(reservations::Column::UpdatedAt, Expr::val(now))
        .filter(reservations::Column::Id.eq(id))
        .exec(db)
        .await?;
    stock_levels::Entity::update_many()
        .col_expr(
            stock_levels::Column::Available,
            Expr::col(stock_levels::Column::Available).add(row.quantity),
        )
        .col_expr(
            stock_levels::Column::Reserved,
            Expr::col(stock_levels::Column::Reserved).sub(row.quantity),
        )
        .col_expr(stock_levels::Column::UpdatedAt, Expr::val(now))
        .filter(stock_levels::Column::Sku.eq(row.sku.as_str()))
        .exec(db)
        .await?;
    let mut reservation = to_reservation(row)?;
    reservation.status = ReservationStatus::Released;
    Ok(reservation)
}

/// Commits every held reservation of `reference`: its stock stays reserved for a
/// confirmed order and the hold no longer expires. Returns every committed reservation
/// of `reference` (those committed now and before), oldest first, so a repeated call
/// changes nothing and returns the same list.
///
/// A hold past its expiry that no one has released yet still holds its stock, so it is
/// committed too. Released reservations are left as they are.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn commit_holds(
    db: &impl ConnectionTrait,
    reference: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Reservation>> {
    // Lock, decide, write, as `release` does: a concurrent release (say, by the expiry
    // worker) of one of these holds queues on the row lock, so each hold ends either
    // committed or released, never both.
    let rows = reservations::Entity::find()
        .filter(reservations::Column::Reference.eq(reference))
        .order_by_asc(reservations::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?;
    let held: Vec<Uuid> = rows
        .iter()
        .filter(|row| row.status == ReservationStatus::Held.as_str())
        .map(|row| row.id)
        .collect();
    if !held.is_empty() {
        reservations::Entity::update_many()
            .col_expr(
                reservations::Column::Status,
                Expr::val(ReservationStatus::Committed.as_str()),
            )
            .col_expr(reservations::Column::UpdatedAt, Expr::val(now))
            .filter(reservations::Column::Id.is_in(held.iter().copied()))
            .exec(db)
            .await?;
    }
    let mut committed = Vec::with_capacity(rows.len());
    for row in rows {
        let mut reservation = to_reservation(row)?;
        if reservation.status == ReservationStatus::Held {
            reservation.status = ReservationStatus::Committed;
        }
        if reservation.status == ReservationStatus::Committed {
            committed.push(reservation);
        }
    }
    Ok(committed)
}

/// Returns `quantity` units of `sku` committed to `reference` (a refunded order's) to
/// available stock: the reference's committed reservations of the SKU shrink by that
/// many, oldest first; one returned whole is released.
///
/// # Errors
/// [`Error::NotCommitted`] when fewer units are committed to `reference`;
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn return_stock(
    db: &impl ConnectionTrait,
    reference: &str,
    sku: &Sku,
    quantity: Quantity,
    now: DateTime<Utc>,
) -> Result<()> {
    // Lock, decide, write, as `release` does. The stock row is locked after the
    // reservations, in the order `commit_holds` and `release` lock them.
    let rows = reservations::Entity::find()
        .filter(reservations::Column::Reference.eq(reference))
        .filter(reservations::Column::Sku.eq(sku.as_str()))
        .filter(reservations::Column::Status.eq(ReservationStatus::Committed.as_str()))
        .order_by_asc(reservations::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?;
    let returned = quantity.get();
    let committed: i64 = rows.iter().map(|row| row.quantity).sum();
    if committed < i64::from(returned) {
        return Err(Error::NotCommitted {
            reference: reference.to_owned(),
            sku: sku.clone(),
            committed,
            returned,
        });
    }
    let mut rest = i64::from(returned);
    for row in rows {
        if rest == 0 {
            break;
        }
        let take = Ord::min(rest, row.quantity);
        rest -= take;
        // A reservation returned whole is released with its quantity as it was.
        let update = reservations::Entity::update_many()
            .col_expr(reservations::Column::UpdatedAt, Expr::val(now));
        let update = if take == row.quantity {
            update.col_expr(
                reservations::Column::Status,
                Expr::val(ReservationStatus::Released.as_str()),
            )
        } else {
            update.col_expr(
                reservations::Column::Quantity,
                Expr::col(reservations::Column::Quantity).sub(take),
            )
        };
        update
            .filter(reservations::Column::Id.eq(row.id))
            .exec(db)
            .await?;
    }
    stock_levels::Entity::update_many()
        .col_expr(
            stock_levels::Column::Available,
            Expr::col(stock_levels::Column::Available).add(i64::from(returned)),
        )
        .col_expr(
            stock_levels::Column::Reserved,
            Expr::col(stock_levels::Column::Reserved).sub(i64::from(returned)),
        )
        .col_expr(stock_levels::Column::UpdatedAt, Expr::val(now))
        .filter(stock_levels::Column::Sku.eq(sku.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Held reservations whose hold has lapsed (`expires_at <= now`), the earliest expiry
/// first, at most `limit` of them: what an expiry worker releases.
///
/// Committed and released reservations are never listed. Nothing is locked: release
/// each one with [`release`], which locks and re-checks it, and treat
/// [`Error::ReservationNotHeld`] as someone else having got there first.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn expired_holds(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Reservation>> {
    // PostgreSQL's LIMIT is a signed 64-bit integer.
    let limit = Ord::min(limit, i64::MAX.unsigned_abs());
    // Served by the `(status, expires_at)` index.
    reservations::Entity::find()
        .filter(reservations::Column::Status.eq(ReservationStatus::Held.as_str()))
        .filter(reservations::Column::ExpiresAt.lte(now))
        .order_by_asc(reservations::Column::ExpiresAt)
        .order_by_asc(reservations::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_reservation)
        .collect()
}

/// Every reservation made for `reference`, oldest first.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn reservations_for(
    db: &impl ConnectionTrait,
    reference: &str,
) -> Result<Vec<Reservation>> {
    reservations::Entity::find()
        .filter(reservations::Column::Reference.eq(reference))
        .order_by_asc(reservations::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(to_reservation)
        .collect()
}

fn to_reservation(row: reservations::Model) -> Result<Reservation> {
    let corrupt = |what: &str| Error::Corrupt(format!("reservation {}: {what}", row.id));
    Ok(Reservation {
        id: row.id,
        sku: Sku::parse(&row.sku).map_err(|_| corrupt("bad SKU"))?,
        quantity: u32::try_from(row.quantity).map_err(|_| corrupt("bad quantity"))?,
        status: ReservationStatus::parse(&row.status).ok_or_else(|| corrupt("unknown status"))?,
        reference: row.reference,
        expires_at: row.expires_at,
    })
}
