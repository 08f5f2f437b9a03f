//! Payments: opened under an idempotency key, then charged or declined, refunded or
//! voided as the gateway answers.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::{payments, refunds};
use crate::error::{Error, Result};
use crate::gateway::{ChargeOutcome, RefundOutcome};
use crate::validate::{
    self, MAX_CUSTOMER_ID_CHARS, MAX_GATEWAY_REFERENCE_CHARS, MAX_KEY_CHARS,
    MAX_ORDER_REFERENCE_CHARS,
};
use crate::verification::{PaymentPolicy, is_verified};

/// The most characters of a decline reason that are kept; the rest is dropped.
const MAX_DECLINE_REASON_CHARS: usize = 1000;

/// Where a payment is in its life.
///
/// `pending` → `charged` | `declined` (the gateway's answer to the charge);
/// `charged` | `pending` → `refunded` (pending: the charge took effect but its answer
/// was lost); `pending` | `declined` → `voided` (nothing was charged); `charged` |
/// `partly_refunded` → `partly_refunded` | `refunded` as refunds of part of it are
/// recorded ([`crate::record_refund_outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Opened; no charge recorded yet.
    Pending,
    /// The money was taken.
    Charged,
    /// The gateway refused to take it.
    Declined,
    /// Part of the money was given back; the rest may be.
    PartlyRefunded,
    /// The money was taken and given back.
    Refunded,
    /// Closed with nothing charged.
    Voided,
}

impl PaymentStatus {
    /// Its name as stored and serialized: `pending`, `charged`, …
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Charged => "charged",
            Self::Declined => "declined",
            Self::PartlyRefunded => "partly_refunded",
            Self::Refunded => "refunded",
            Self::Voided => "voided",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "charged" => Some(Self::Charged),
            "declined" => Some(Self::Declined),
            "partly_refunded" => Some(Self::PartlyRefunded),
            "refunded" => Some(Self::Refunded),
            "voided" => Some(Self::Voided),
            _ => None,
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// The caller's key for this payment: opening it again with the same key returns
    /// the same payment. 1–255 characters without surrounding whitespace or control
    /// characters; compared exactly.
    pub idempotency_key: String,
    /// What the payment is for (e.g. the order id). 1–128 characters, like the key.
    pub order_reference: String,
    /// Who pays. 1–64 characters, like the key.
    pub customer_id: String,
    /// How much, in minor units; more than zero.
    pub amount_minor: i64,
    /// ISO 4217 code: three uppercase letters.
    pub currency: String,
}

impl NewPayment {
    fn validate(&self) -> Result<()> {
        validate::text("idempotency_key", &self.idempotency_key, MAX_KEY_CHARS)?;
        validate::text(
            "order_reference",
            &self.order_reference,
            MAX_ORDER_REFERENCE_CHARS,
        )?;
        validate::text("customer_id", &self.customer_id, MAX_CUSTOMER_ID_CHARS)?;
        if self.amount_minor <= 0 {
            return Err(Error::Invalid(
                "amount_minor must be more than zero".to_owned(),
            ));
        }
        if !validate::is_currency(&self.currency) {
            return Err(Error::Invalid(
                "currency must be an ISO 4217 code of three uppercase letters, e.g. EUR".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    /// Its id.
    pub id: Uuid,
    /// The caller's key for it, unique.
    pub idempotency_key: String,
    /// What it is for.
    pub order_reference: String,
    /// Who pays.
    pub customer_id: String,
    /// How much, in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Where it is in its life.
    pub status: PaymentStatus,
    /// The gateway's reference for the charge, once charged.
    pub gateway_reference: Option<String>,
    /// Why the gateway declined it, if it did.
    pub decline_reason: Option<String>,
    /// When it was opened, to the microsecond.
    pub created_at: DateTime<Utc>,
    /// When its status last changed, to the microsecond.
    pub updated_at: DateTime<Utc>,
}

/// Money given back for a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    /// Its id.
    pub id: Uuid,
    /// The payment refunded.
    pub payment_id: Uuid,
    /// How much, in minor units.
    pub amount_minor: i64,
    /// The gateway's reference for the refund.
    pub gateway_reference: String,
    /// When it was recorded, to the microsecond.
    pub created_at: DateTime<Utc>,
}

/// Opens a `pending` payment, or returns the one already opened under
/// `new.idempotency_key` if its details are the same.
///
/// Safe under concurrent calls with one key: exactly one payment is created and every
/// call returns it. An existing payment is returned whatever its status and whatever
/// `policy` says now: the policy applied when it was opened.
///
/// # Errors
/// [`Error::Invalid`] for details that break the rules on [`NewPayment`];
/// [`Error::VerificationRequired`] when `policy` wants the customer verified first;
/// [`Error::KeyReused`] when the key's payment has other details; [`Error::Database`]
/// otherwise.
pub async fn open(
    db: &impl ConnectionTrait,
    new: &NewPayment,
    policy: &PaymentPolicy,
    now: DateTime<Utc>,
) -> Result<Payment> {
    new.validate()?;
    if let Some(existing) = find_by_key(&new.idempotency_key).one(db).await? {
        return same_payment(existing, new);
    }
    let verified = is_verified(db, &new.customer_id).await?;
    policy.check(&new.customer_id, new.amount_minor, verified)?;

    // Stored to the microsecond, so the payment returned equals the one read back.
    let now = now.trunc_subsecs(6);
    let id = Uuid::now_v7();
    // A concurrent open with this key may insert first. Catching the unique violation
    // would not do: on PostgreSQL a failed statement aborts the caller's transaction.
    // So the insert does nothing on a conflict (on PostgreSQL after waiting for the
    // other transaction to commit or roll back), and the locking read that follows
    // sees whichever row won: ours, or the other caller's, now committed (a locking read
    // sees the latest version even in MySQL's REPEATABLE READ).
    payments::Entity::insert(payments::ActiveModel {
        id: Set(id),
        idempotency_key: Set(new.idempotency_key.clone()),
        order_reference: Set(new.order_reference.clone()),
        customer_id: Set(new.customer_id.clone()),
        amount_minor: Set(new.amount_minor),
        currency: Set(new.currency.clone()),
        status: Set(PaymentStatus::Pending.as_str().to_owned()),
        gateway_reference: Set(None),
        decline_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict_do_nothing_on([payments::Column::IdempotencyKey])
    .exec_without_returning(db)
    .await?;
    let stored = find_by_key(&new.idempotency_key)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "payment {} vanished while it was opened",
                new.idempotency_key
            ))
        })?;
    if stored.id == id {
        to_payment(stored)
    } else {
        same_payment(stored, new)
    }
}

/// Records the gateway's answer to the charge of the payment under `key`: `pending`
/// becomes `charged` (with the gateway's reference) or `declined` (with its reason).
///
/// Idempotent: a payment already `charged` (or `declined`) is returned unchanged, as
/// the first answer recorded stands (a keyed gateway gives one key one answer).
///
/// # Errors
/// [`Error::UnknownPayment`]; [`Error::InvalidTransition`] from any other status;
/// [`Error::Invalid`] for a charge reference that is not 1–255 characters without
/// surrounding whitespace or control characters; [`Error::Database`] otherwise.
pub async fn record_charge(
    db: &impl ConnectionTrait,
    key: &str,
    outcome: &ChargeOutcome,
    now: DateTime<Utc>,
) -> Result<Payment> {
    let (to, reference, reason) = match outcome {
        ChargeOutcome::Charged { reference } => {
            validate::text("gateway reference", reference, MAX_GATEWAY_REFERENCE_CHARS)?;
            (PaymentStatus::Charged, Some(reference.clone()), None)
        }
        ChargeOutcome::Declined { reason } => {
            let reason = reason.chars().take(MAX_DECLINE_REASON_CHARS).collect();
            (PaymentStatus::Declined, None, Some(reason))
        }
    };
    let mut payment = lock_payment(db, key).await?;
    if payment.status == to {
        return Ok(payment);
    }
    if payment.status != PaymentStatus::Pending {
        return Err(Error::InvalidTransition {
            key: key.to_owned(),
            from: payment.status,
            to,
        });
    }
    let now = now.trunc_subsecs(6);
    payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::val(to.as_str()))
        .col_expr(
            payments::Column::GatewayReference,
            Expr::val(reference.clone()),
        )
        .col_expr(payments::Column::DeclineReason, Expr::val(reason.clone()))
        .col_expr(payments::Column::UpdatedAt, Expr::val(now))
        .filter(payments::Column::Id.eq(payment.id))
        .exec(db)
        .await?;
    payment.status = to;
    payment.gateway_reference = reference;
    payment.decline_reason = reason;
    payment.updated_at = now;
    Ok(payment)
}

/// Records the gateway's answer to the refund of the payment under `key`.
///
/// [`RefundOutcome::Refunded`]: `charged` becomes `refunded`, and a refund of the whole
/// amount is recorded. So does `pending`: the gateway refunds only what it charged, so
/// the charge took effect and only its answer was lost. [`RefundOutcome::NothingCharged`]:
/// `pending` or `declined` becomes `voided`.
///
/// Idempotent: a payment already `refunded` (or `voided`) is returned unchanged.
///
/// # Errors
/// [`Error::UnknownPayment`] (callers decide whether that matters);
/// [`Error::InvalidTransition`] from any other status (e.g. `NothingCharged` for a
/// payment recorded as charged); [`Error::Invalid`] for a refund reference that is not
/// 1–255 characters without surrounding whitespace or control characters;
/// [`Error::Database`] otherwise.
pub async fn record_refund(
    db: &impl ConnectionTrait,
    key: &str,
    outcome: &RefundOutcome,
    now: DateTime<Utc>,
) -> Result<Payment> {
    let (to, from) = match outcome {
        RefundOutcome::Refunded { reference } => {
            validate::text("gateway reference", reference, MAX_GATEWAY_REFERENCE_CHARS)?;
            (
                PaymentStatus::Refunded,
                [PaymentStatus::Charged, PaymentStatus::Pending],
            )
        }
        RefundOutcome::NothingCharged => (
            PaymentStatus::Voided,
            [PaymentStatus::Pending, PaymentStatus::Declined],
        ),
    };
    let mut payment = lock_payment(db, key).await?;
    if payment.status == to {
        return Ok(payment);
    }
    if !from.contains(&payment.status) {
        return Err(Error::InvalidTransition {
            key: key.to_owned(),
            from: payment.status,
            to,
        });
    }
    let now = now.trunc_subsecs(6);
    payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::val(to.as_str()))
        .col_expr(payments::Column::UpdatedAt, Expr::val(now))
        .filter(payments::Column::Id.eq(payment.id))
        .exec(db)
        .await?;
    if let RefundOutcome::Refunded { reference } = outcome {
        refunds::Entity::insert(refunds::ActiveModel {
            id: Set(Uuid::now_v7()),
            payment_id: Set(payment.id),
            amount_minor: Set(payment.amount_minor),
            gateway_reference: Set(reference.clone()),
            created_at: Set(now),
        })
        .exec_without_returning(db)
        .await?;
    }
    payment.status = to;
    payment.updated_at = now;
    Ok(payment)
}

/// The payment opened under `key`, if any.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn payment_by_key(db: &impl ConnectionTrait, key: &str) -> Result<Option<Payment>> {
    find_by_key(key).one(db).await?.map(to_payment).transpose()
}

/// Every payment for `order_reference`, oldest first.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn payments_for_order(
    db: &impl ConnectionTrait,
    order_reference: &str,
) -> Result<Vec<Payment>> {
    payments::Entity::find()
        .filter(payments::Column::OrderReference.eq(order_reference))
        .order_by_asc(payments::Column::CreatedAt)
        .order_by_asc(payments::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(to_payment)
        .collect()
}

/// Every refund of the payment `payment_id`, oldest first.
///
/// # Errors
/// [`Error::Database`].
pub async fn refunds_for(db: &impl ConnectionTrait, payment_id: Uuid) -> Result<Vec<Refund>> {
    Ok(refunds::Entity::find()
        .filter(refunds::Column::PaymentId.eq(payment_id))
        .order_by_asc(refunds::Column::CreatedAt)
        .order_by_asc(refunds::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|row| Refund {
            id: row.id,
            payment_id: row.payment_id,
            amount_minor: row.amount_minor,
            gateway_reference: row.gateway_reference,
            created_at: row.created_at,
        })
        .collect())
}

fn find_by_key(key: &str) -> Select<payments::Entity> {
    payments::Entity::find().filter(payments::Column::IdempotencyKey.eq(key))
}

/// The payment under `key`, its row locked until the caller's transaction ends: lock,
/// decide, write, so that concurrent transitions of one payment queue up and each sees
/// the one before.
async fn lock_payment(db: &impl ConnectionTrait, key: &str) -> Result<Payment> {
    let row = find_by_key(key)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| Error::UnknownPayment {
            key: key.to_owned(),
        })?;
    to_payment(row)
}

/// `existing`, if it is the payment `new` describes; [`Error::KeyReused`] if not.
fn same_payment(existing: payments::Model, new: &NewPayment) -> Result<Payment> {
    let same = existing.order_reference == new.order_reference
        && existing.customer_id == new.customer_id
        && existing.amount_minor == new.amount_minor
        && existing.currency == new.currency;
    if !same {
        return Err(Error::KeyReused {
            key: new.idempotency_key.clone(),
        });
    }
    to_payment(existing)
}

fn to_payment(row: payments::Model) -> Result<Payment> {
    let status = PaymentStatus::parse(&row.status)
        .ok_or_else(|| Error::Corrupt(format!("payment {}: unknown status", row.id)))?;
    Ok(Payment {
        id: row.id,
        idempotency_key: row.idempotency_key,
        order_reference: row.order_reference,
        customer_id: row.customer_id,
        amount_minor: row.amount_minor,
        currency: row.currency,
        status,
        gateway_reference: row.gateway_reference,
        decline_reason: row.decline_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in [
            PaymentStatus::Pending,
            PaymentStatus::Charged,
            PaymentStatus::Declined,
            PaymentStatus::PartlyRefunded,
            PaymentStatus::Refunded,
            PaymentStatus::Voided,
        ] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        assert_eq!(PaymentStatus::parse("Charged"), None);
    }

    fn new_payment() -> NewPayment {
        NewPayment {
            idempotency_key: "pay-1".to_owned(),
            order_reference: "order-1".to_owned(),
            customer_id: "customer-1".to_owned(),
            amount_minor: 1250,
            currency: "EUR".to_owned(),
        }
    }

    #[test]
    fn new_payments_are_validated_field_by_field() {
        assert!(new_payment().validate().is_ok());
        let cases = [
            (
                "idempotency_key",
                NewPayment {
                    idempotency_key: String::new(),
                    ..new_payment()
                },
            ),
            (
                "idempotency_key",
                NewPayment {
                    idempotency_key: "x".repeat(256),
                    ..new_payment()
                },
            ),
            (
                "idempotency_key",
                NewPayment {
                    idempotency_key: "pay-1 ".to_owned(),
                    ..new_payment()
                },
            ),
            (
                "order_reference",
                NewPayment {
                    order_reference: String::new(),
                    ..new_payment()
                },
            ),
            (
                "customer_id",
                NewPayment {
                    customer_id: "c\n1".to_owned(),
                    ..new_payment()
                },
            ),
            (
                "amount_minor",
                NewPayment {
                    amount_minor: 0,
                    ..new_payment()
                },
            ),
            (
                "amount_minor",
                NewPayment {
                    amount_minor: -5,
                    ..new_payment()
                },
            ),
            (
                "currency",
                NewPayment {
                    currency: "eur".to_owned(),
                    ..new_payment()
                },
            ),
        ];
        for (field, payment) in cases {
            let err = payment.validate().unwrap_err();
            assert!(
                matches!(err, Error::Invalid(ref why) if why.starts_with(field)),
                "{field}: {err}"
            );
        }
        let mut longest = new_payment();
        longest.idempotency_key = "k".repeat(255);
        assert!(longest.validate().is_ok());
    }
}
