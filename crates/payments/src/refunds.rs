//! Refund intents: a refund of part or all of a charged payment, asked for before the
//! gateway is called, closed by its answer, and settled once applied to its order. One
//! intent of a payment is open at a time, and the intents never ask back more than was
//! charged.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::{payments, refund_intents, refunds};
use crate::error::{Error, Result};
use crate::payments::PaymentStatus;
use crate::validate::{self, MAX_GATEWAY_REFERENCE_CHARS};

/// The most characters of a refusal or failure that are kept.
const MAX_ERROR_CHARS: usize = 1000;

/// What became of a refund intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Asked for; the gateway's answer is not recorded yet.
    Requested,
    /// The gateway gave the money back.
    Refunded,
    /// The gateway refused it: no money moved.
    Refused,
    /// The gateway kept failing and the refund was given up: it may or may not have
    /// taken effect at the gateway. The next refund of the payment is sent under the same
    /// gateway key, so the gateway answers it with this one's outcome if it did.
    Failed,
}

impl RefundStatus {
    /// Its name as stored and serialized.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Refunded => "refunded",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }

    /// The status named `s` (as [`Self::as_str`] names it), if any.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Requested, Self::Refunded, Self::Refused, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refund asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundIntent {
    /// Its id (the caller's: a refund saga's run id).
    pub id: Uuid,
    /// The payment refunded.
    pub payment_id: Uuid,
    /// What the payment is for (the order's id).
    pub order_reference: String,
    /// The key the gateway is asked under.
    pub gateway_key: String,
    /// The key the payment was charged under.
    pub charge_key: String,
    /// How much, in minor units.
    pub amount_minor: i64,
    /// The payment's ISO 4217 currency.
    pub currency: String,
    /// What became of it.
    pub status: RefundStatus,
    /// Why it was refused or failed.
    pub error: Option<String>,
    /// The gateway's reference for the refund, once refunded.
    pub gateway_reference: Option<String>,
    /// When the refund was applied to its order ([`settle_refund`]); until then a
    /// refunded intent still holds the payment's refunds back.
    pub applied_at: Option<DateTime<Utc>>,
    /// When it was asked for, to the microsecond.
    pub created_at: DateTime<Utc>,
    /// When it last changed, to the microsecond.
    pub updated_at: DateTime<Utc>,
}

/// Asks for a refund of `amount_minor` of the charged payment of `order_reference`,
/// under the caller's `id`; asking again with the same id returns the same intent.
///
/// The gateway key is `refund:<payment id>:<n>`, where `n` counts the payment's intents
/// whose outcome is known (refunded or refused), plus one: an intent that failed
/// without an answer leaves its key to the next, so that a refund that did go through
/// is answered, not repeated (and one of another amount is refused by the gateway as a
/// reused key rather than paid twice).
///
/// # Errors
/// [`Error::NothingPaid`] when the order has no charged payment;
/// [`Error::RefundInProgress`] while another intent of the payment is open (see
/// [`lock_for_refund`]); [`Error::OverRefund`] when the refunds would give back more
/// than was charged;
/// [`Error::Invalid`] for an amount that is not more than zero; [`Error::Database`].
pub async fn request_refund(
    db: &impl ConnectionTrait,
    order_reference: &str,
    id: Uuid,
    amount_minor: i64,
    now: DateTime<Utc>,
) -> Result<RefundIntent> {
    if let Some(existing) = refund_intent(db, id).await? {
        return Ok(existing);
    }
    if amount_minor <= 0 {
        return Err(Error::Invalid(
            "a refund's amount must be more than zero".to_owned(),
        ));
    }
    // Lock the payment, then decide: intents of one payment queue on its row.
    let (payment, intents) = lock_refundable(db, order_reference).await?;
    let refunded = refunded_minor(db, payment.id).await?;
    let refundable_minor = payment.amount_minor - refunded;
    if amount_minor > refundable_minor {
        return Err(Error::OverRefund {
            requested_minor: amount_minor,
            refundable_minor,
        });
    }
    let answered = intents
        .iter()
        .filter(|intent| {
            intent.status == RefundStatus::Refunded.as_str()
                || intent.status == RefundStatus::Refused.as_str()
        })
        .count();
    let now = now.trunc_subsecs(6);
    let row = refund_intents::Model {
        id,
        payment_id: payment.id,
        gateway_key: format!("refund:{}:{}", payment.id, answered + 1),
        amount_minor,
        status: RefundStatus::Requested.as_str().to_owned(),
        error: None,
        gateway_reference: None,
        applied_at: None,
        created_at: now,
        updated_at: now,
    };
    refund_intents::Entity::insert(refund_intents::ActiveModel {
        id: Set(row.id),
        payment_id: Set(row.payment_id),
        gateway_key: Set(row.gateway_key.clone()),
        amount_minor: Set(row.amount_minor),
        status: Set(row.status.clone()),
        error: Set(None),
        gateway_reference: Set(None),
        applied_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    to_intent(row, &payment)
}

/// Locks the charged payment of `order_reference` for a refund and checks that no
/// other refund of it is open: call it first in the transaction that asks for a
/// refund, before reading what the refund is of, so that what is read is what the
/// refund before left (refunds of one payment queue on its row).
///
/// # Errors
/// [`Error::NothingPaid`] when the order has no charged payment;
/// [`Error::RefundInProgress`] while another intent of the payment is open (asked for,
/// or refunded and not yet applied to its order); [`Error::Database`].
pub async fn lock_for_refund(db: &impl ConnectionTrait, order_reference: &str) -> Result<()> {
    lock_refundable(db, order_reference).await.map(|_| ())
}

async fn lock_refundable(
    db: &impl ConnectionTrait,
    order_reference: &str,
) -> Result<(payments::Model, Vec<refund_intents::Model>)> {
    let payment = payments::Entity::find()
        .filter(payments::Column::OrderReference.eq(order_reference))
        .filter(payments::Column::Status.is_in([
            PaymentStatus::Charged.as_str(),
            PaymentStatus::PartlyRefunded.as_str(),
            PaymentStatus::Refunded.as_str(),
        ]))
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| Error::NothingPaid {
            order_reference: order_reference.to_owned(),
        })?;
    let intents = refund_intents::Entity::find()
        .filter(refund_intents::Column::PaymentId.eq(payment.id))
        .all(db)
        .await?;
    let open = intents.iter().find(|intent| {
        intent.status == RefundStatus::Requested.as_str()
            || (intent.status == RefundStatus::Refunded.as_str() && intent.applied_at.is_none())
    });
    if let Some(open) = open {
        return Err(Error::RefundInProgress { refund_id: open.id });
    }
    Ok((payment, intents))
}

/// Records that refunded intent `id` was applied to its order (its units back in
/// stock): from now on the payment may be refunded again. Settling it again changes
/// nothing.
///
/// # Errors
/// [`Error::UnknownRefund`]; [`Error::RefundClosed`] for an intent that is not
/// refunded; [`Error::Database`].
pub async fn settle_refund(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<RefundIntent> {
    let (intent, _) = lock_intent(db, id).await?;
    if intent.status != RefundStatus::Refunded {
        return Err(Error::RefundClosed {
            id,
            status: intent.status,
        });
    }
    if intent.applied_at.is_some() {
        return Ok(intent);
    }
    refund_intents::Entity::update_many()
        .col_expr(
            refund_intents::Column::AppliedAt,
            Expr::val(now.trunc_subsecs(6)),
        )
        .filter(refund_intents::Column::Id.eq(id))
        .exec(db)
        .await?;
    refund_intent(db, id)
        .await?
        .ok_or(Error::UnknownRefund { id })
}

/// Records that the gateway gave intent `id`'s money back under `reference`: the intent
/// is refunded, the refund is recorded against its payment, and the payment becomes
/// `refunded` once every unit of its amount was given back (`partly_refunded` before).
/// Recording it again changes nothing.
///
/// # Errors
/// [`Error::UnknownRefund`]; [`Error::RefundClosed`] for an intent refused or failed;
/// [`Error::Invalid`] for a reference that is not 1–255 characters without surrounding
/// whitespace or control characters; [`Error::Database`].
pub async fn record_refunded(
    db: &impl ConnectionTrait,
    id: Uuid,
    reference: &str,
    now: DateTime<Utc>,
) -> Result<RefundIntent> {
    validate::text("gateway reference", reference, MAX_GATEWAY_REFERENCE_CHARS)?;
    let (intent, payment) = lock_intent(db, id).await?;
    if intent.status == RefundStatus::Refunded {
        return Ok(intent);
    }
    if intent.status != RefundStatus::Requested {
        return Err(Error::RefundClosed {
            id,
            status: intent.status,
        });
    }
    let now = now.trunc_subsecs(6);
    refund_intents::Entity::update_many()
        .col_expr(
            refund_intents::Column::Status,
            Expr::val(RefundStatus::Refunded.as_str()),
        )
        .col_expr(
            refund_intents::Column::GatewayReference,
            Expr::val(reference),
        )
        .col_expr(refund_intents::Column::UpdatedAt, Expr::val(now))
        .filter(refund_intents::Column::Id.eq(id))
        .exec(db)
        .await?;
    refunds::Entity::insert(refunds::ActiveModel {
        id: Set(id),
        payment_id: Set(payment.id),
        amount_minor: Set(intent.amount_minor),
        gateway_reference: Set(reference.to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    let status = if refunded_minor(db, payment.id).await? >= payment.amount_minor {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartlyRefunded
    };
    payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::val(status.as_str()))
        .col_expr(payments::Column::UpdatedAt, Expr::val(now))
        .filter(payments::Column::Id.eq(payment.id))
        .exec(db)
        .await?;
    refund_intent(db, id)
        .await?
        .ok_or(Error::UnknownRefund { id })
}

/// Closes open intent `id` without a refund: `refused` when the gateway said no (no
/// money moved), `failed` when its answer never came. Closing a closed intent again
/// changes nothing.
///
/// # Errors
/// [`Error::UnknownRefund`]; [`Error::RefundClosed`] for a refunded intent, or to give
/// a closed intent another status; [`Error::Invalid`] for `Requested` or `Refunded`;
/// [`Error::Database`].
pub async fn close_refund(
    db: &impl ConnectionTrait,
    id: Uuid,
    status: RefundStatus,
    error: &str,
    now: DateTime<Utc>,
) -> Result<RefundIntent> {
    if !matches!(status, RefundStatus::Refused | RefundStatus::Failed) {
        return Err(Error::Invalid(format!(
            "a refund is closed as refused or failed, not {status}"
        )));
    }
    let (intent, _) = lock_intent(db, id).await?;
    if intent.status == status {
        return Ok(intent);
    }
    if intent.status != RefundStatus::Requested {
        return Err(Error::RefundClosed {
            id,
            status: intent.status,
        });
    }
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    refund_intents::Entity::update_many()
        .col_expr(refund_intents::Column::Status, Expr::val(status.as_str()))
        .col_expr(refund_intents::Column::Error, Expr::val(error))
        .col_expr(
            refund_intents::Column::UpdatedAt,
            Expr::val(now.trunc_subsecs(6)),
        )
        .filter(refund_intents::Column::Id.eq(id))
        .exec(db)
        .await?;
    refund_intent(db, id)
        .await?
        .ok_or(Error::UnknownRefund { id })
}

/// The refund intent `id`, if any.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn refund_intent(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<RefundIntent>> {
    let Some(row) = refund_intents::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let payment = payment_of(db, &row).await?;
    to_intent(row, &payment).map(Some)
}

/// Up to `limit` refund intents in `status`, newest first, older than `before` if
/// given: what an operator looks through (failed refunds, say).
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn refund_intents_with_status(
    db: &impl ConnectionTrait,
    status: RefundStatus,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<RefundIntent>> {
    let mut query =
        refund_intents::Entity::find().filter(refund_intents::Column::Status.eq(status.as_str()));
    if let Some(before) = before {
        query = query.filter(refund_intents::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(refund_intents::Column::Id)
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()))
        .all(db)
        .await?;
    let payments = payments::Entity::find()
        .filter(payments::Column::Id.is_in(rows.iter().map(|row| row.payment_id)))
        .all(db)
        .await?;
    with_payments(rows, &payments)
}

/// Every refund intent of the payments of `order_reference`, oldest first.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn refund_intents_for_order(
    db: &impl ConnectionTrait,
    order_reference: &str,
) -> Result<Vec<RefundIntent>> {
    let payments = payments::Entity::find()
        .filter(payments::Column::OrderReference.eq(order_reference))
        .all(db)
        .await?;
    let rows = refund_intents::Entity::find()
        .filter(refund_intents::Column::PaymentId.is_in(payments.iter().map(|p| p.id)))
        .order_by_asc(refund_intents::Column::CreatedAt)
        .order_by_asc(refund_intents::Column::Id)
        .all(db)
        .await?;
    with_payments(rows, &payments)
}

fn with_payments(
    rows: Vec<refund_intents::Model>,
    payments: &[payments::Model],
) -> Result<Vec<RefundIntent>> {
    rows.into_iter()
        .map(|row| {
            let payment = payments
                .iter()
                .find(|p| p.id == row.payment_id)
                .ok_or_else(|| Error::Corrupt(format!("refund {}: no payment", row.id)))?;
            to_intent(row, payment)
        })
        .collect()
}

/// The intent `id` and its payment, the payment's row locked (the lock
/// [`request_refund`] takes), then the intent's.
async fn lock_intent(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<(RefundIntent, payments::Model)> {
    let row = refund_intents::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::UnknownRefund { id })?;
    let payment = payments::Entity::find_by_id(row.payment_id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("refund {id}: no payment")))?;
    let row = refund_intents::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(Error::UnknownRefund { id })?;
    let intent = to_intent(row, &payment)?;
    Ok((intent, payment))
}

async fn payment_of(
    db: &impl ConnectionTrait,
    row: &refund_intents::Model,
) -> Result<payments::Model> {
    payments::Entity::find_by_id(row.payment_id)
        .one(db)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("refund {}: no payment", row.id)))
}

/// What was given back of payment `payment_id` so far, in minor units.
async fn refunded_minor(db: &impl ConnectionTrait, payment_id: Uuid) -> Result<i64> {
    Ok(refunds::Entity::find()
        .filter(refunds::Column::PaymentId.eq(payment_id))
        .all(db)
        .await?
        .iter()
        .map(|refund| refund.amount_minor)
        .sum())
}

fn to_intent(row: refund_intents::Model, payment: &payments::Model) -> Result<RefundIntent> {
    Ok(RefundIntent {
        order_reference: payment.order_reference.clone(),
        status: RefundStatus::parse(&row.status)
            .ok_or_else(|| Error::Corrupt(format!("refund {}: unknown status", row.id)))?,
        id: row.id,
        payment_id: row.payment_id,
        gateway_key: row.gateway_key,
        charge_key: payment.idempotency_key.clone(),
        amount_minor: row.amount_minor,
        currency: payment.currency.clone(),
        error: row.error,
        gateway_reference: row.gateway_reference,
        applied_at: row.applied_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
