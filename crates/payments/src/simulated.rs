//! A payment gateway simulated on the payments boundary's database: keyed and
//! idempotent like a real payment API, with latency, failures and declines on demand.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect,
    SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::gateway_requests;
use crate::error::{Error, Result};
use crate::gateway::{
    ChargeOutcome, ChargeRequest, GatewayError, GatewayFuture, PaymentGateway, RefundOutcome,
    RefundRequest,
};
use crate::validate::{self, MAX_KEY_CHARS};

/// Why the simulated gateway declines a charge.
const DECLINE_REASON: &str = "card declined (simulated)";

/// How many times a request is tried when it keeps losing the race for its key to
/// concurrent requests. Losing once means the winner has committed, so the second try
/// reads its outcome; more is a safety margin.
const ATTEMPTS: usize = 3;

/// How the simulated gateway behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedGatewayOptions {
    /// How long each request takes before it is processed.
    pub latency: Duration,
    /// The probability (0.0–1.0) that a request fails with
    /// [`GatewayError::Unavailable`]: half of those before it is processed, half after
    /// its effect is recorded (a lost response).
    pub failure_rate: f64,
    /// The probability (0.0–1.0) that a new charge is declined.
    pub decline_rate: f64,
}

impl Default for SimulatedGatewayOptions {
    /// No latency, no failures, no declines.
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            failure_rate: 0.0,
            decline_rate: 0.0,
        }
    }
}

/// Behaves like a real keyed payment API, on the payments boundary's own database (its
/// `gateway_requests` table stands for the payment provider's records).
///
/// - Each request takes [`SimulatedGatewayOptions::latency`].
/// - Idempotent per key: a key seen before returns the stored outcome, if the request
///   is the same (a charge's kind, amount and currency; a refund's kind, charge key and
///   amount); a key reused for another request is [`GatewayError::Refused`]. A
///   request is recorded in one transaction, under its key as primary key: of
///   concurrent requests with one key, one records its effect and the others return
///   that outcome.
/// - With probability `failure_rate` a request fails with
///   [`GatewayError::Unavailable`], half of the time before anything is recorded and
///   half of the time after its effect is (a lost response: a retry with the same key
///   returns the stored outcome).
/// - A new charge is declined with probability `decline_rate`, otherwise charged
///   under a reference `ch_…`.
/// - A refund gives back (part of) a charge made under its `charge_key` (`re_…`),
///   never more than is left of it. If that charge was declined, or never arrived, the
///   outcome is [`RefundOutcome::NothingCharged`]; in the second case the charge key
///   is also spent, declined, so that a charge arriving late (a request still in flight
///   when the caller gave up and refunded) cannot take money that no one will give
///   back.
///
/// Call it outside any unit of work: like a real gateway it is not part of the caller's
/// transaction (and on SQLite its own write would wait for the caller's).
#[derive(Debug, Clone)]
pub struct SimulatedGateway {
    db: DatabaseConnection,
    options: SimulatedGatewayOptions,
}

impl SimulatedGateway {
    /// A gateway keeping its records on `db`, the payments boundary's connection (pool).
    #[must_use]
    pub fn new(db: DatabaseConnection, options: SimulatedGatewayOptions) -> Self {
        Self { db, options }
    }

    /// How it behaves.
    #[must_use]
    pub fn options(&self) -> SimulatedGatewayOptions {
        self.options
    }

    async fn simulate_charge(
        &self,
        request: &ChargeRequest,
    ) -> Result<ChargeOutcome, GatewayError> {
        let failure = self.arrive(&request.key).await?;
        check_key("key", &request.key)?;
        check_amount(request.amount_minor)?;
        if !validate::is_currency(&request.currency) {
            return Err(GatewayError::Refused(
                "currency must be three uppercase letters".to_owned(),
            ));
        }
        let mut outcome = None;
        for _ in 0..ATTEMPTS {
            outcome = self.try_charge(request).await?;
            if outcome.is_some() {
                break;
            }
        }
        let outcome = outcome.ok_or_else(|| contended(&request.key))?;
        tracing::debug!(key = request.key, ?outcome, "simulated charge");
        depart(&request.key, failure)?;
        Ok(outcome)
    }

    async fn simulate_refund(
        &self,
        request: &RefundRequest,
    ) -> Result<RefundOutcome, GatewayError> {
        let failure = self.arrive(&request.key).await?;
        check_key("key", &request.key)?;
        check_key("charge_key", &request.charge_key)?;
        check_amount(request.amount_minor)?;
        if request.key == request.charge_key {
            return Err(GatewayError::Refused(
                "a refund needs a key of its own, not the charge's".to_owned(),
            ));
        }
        let mut outcome = None;
        for _ in 0..ATTEMPTS {
            outcome = self.try_refund(request).await?;
            if outcome.is_some() {
                break;
            }
        }
        let outcome = outcome.ok_or_else(|| contended(&request.key))?;
        tracing::debug!(key = request.key, ?outcome, "simulated refund");
        depart(&request.key, failure)?;
        Ok(outcome)
    }

    /// Waits out the latency and draws the request's failure; fails here if it is lost
    /// before it is processed.
    async fn arrive(&self, key: &str) -> Result<Option<Failure>, GatewayError> {
        if !self.options.latency.is_zero() {
            tokio::time::sleep(self.options.latency).await;
        }
        let failure = (fastrand::f64() < self.options.failure_rate).then(|| {
            if fastrand::bool() {
                Failure::BeforeProcessing
            } else {
                Failure::AfterProcessing
            }
        });
        if failure == Some(Failure::BeforeProcessing) {
            tracing::debug!(key, "simulated gateway: request lost before processing");
            return Err(GatewayError::Unavailable(
                "connection reset before the request was processed (simulated)".to_owned(),
            ));
        }
        Ok(failure)
    }

    /// The charge's outcome: stored under its key before, or drawn and recorded now.
    /// `None` if a concurrent request with the key recorded first: try again to read it.
    async fn try_charge(
        &self,
        request: &ChargeRequest,
    ) -> Result<Option<ChargeOutcome>, GatewayError> {
        let tx = self.begin().await?;
        if let Some(row) = gateway_requests::Entity::find_by_id(request.key.as_str())
            .one(&tx)
            .await?
        {
            tx.rollback().await?;
            return stored_charge(&row, request).map(Some);
        }
        let outcome = if fastrand::f64() < self.options.decline_rate {
            ChargeOutcome::Declined {
                reason: DECLINE_REASON.to_owned(),
            }
        } else {
            ChargeOutcome::Charged {
                reference: format!("ch_{}", Uuid::new_v4().simple()),
            }
        };
        let (recorded, reference, reason) = match &outcome {
            ChargeOutcome::Charged { reference } => (
                GatewayRequestOutcome::Charged,
                Some(reference.clone()),
                None,
            ),
            ChargeOutcome::Declined { reason } => {
                (GatewayRequestOutcome::Declined, None, Some(reason.clone()))
            }
        };
        let row = gateway_requests::ActiveModel {
            key: Set(request.key.clone()),
            kind: Set(GatewayRequestKind::Charge.as_str().to_owned()),
            charge_key: Set(None),
            amount_minor: Set(request.amount_minor),
            currency: Set(Some(request.currency.clone())),
            outcome: Set(recorded.as_str().to_owned()),
            reference: Set(reference),
            reason: Set(reason),
            created_at: Set(Utc::now()),
        };
        if !insert_new(&tx, row).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// The refund's outcome: stored under its key before, or decided and recorded now.
    /// `None` if a concurrent request recorded first under its key or its charge's:
    /// try again to read it.
    async fn try_refund(
        &self,
        request: &RefundRequest,
    ) -> Result<Option<RefundOutcome>, GatewayError> {
        let tx = self.begin().await?;
        if let Some(row) = gateway_requests::Entity::find_by_id(request.key.as_str())
            .one(&tx)
            .await?
        {
            tx.rollback().await?;
            return stored_refund(&row, request).map(Some);
        }
        let charge = gateway_requests::Entity::find_by_id(request.charge_key.as_str())
            .one(&tx)
            .await?;
        let mut cancellation = None;
        let (outcome, currency) = match charge {
            None => {
                // Spend the charge key, declined, in the same transaction: a charge
                // arriving later returns this decline and takes nothing. A charge
                // recording concurrently collides with this row on the key, and the
                // loser tries again and sees the winner.
                cancellation = Some(gateway_requests::ActiveModel {
                    key: Set(request.charge_key.clone()),
                    kind: Set(GatewayRequestKind::Charge.as_str().to_owned()),
                    charge_key: Set(None),
                    amount_minor: Set(request.amount_minor),
                    currency: Set(None),
                    outcome: Set(GatewayRequestOutcome::Declined.as_str().to_owned()),
                    reference: Set(None),
                    reason: Set(Some(format!(
                        "cancelled before it was charged: refund {} came first",
                        request.key
                    ))),
                    created_at: Set(Utc::now()),
                });
                (RefundOutcome::NothingCharged, None)
            }
            Some(charge) if charge.kind != GatewayRequestKind::Charge.as_str() => {
                tx.rollback().await?;
                return Err(GatewayError::Refused(format!(
                    "{} is the key of a refund, not of a charge",
                    request.charge_key
                )));
            }
            Some(charge) if charge.outcome == GatewayRequestOutcome::Charged.as_str() => {
                // Locked (it exists, so this locks one row) so that concurrent refunds
                // of one charge queue up and never give back more than it took.
                let Some(charge) =
                    gateway_requests::Entity::find_by_id(request.charge_key.as_str())
                        .lock_exclusive()
                        .one(&tx)
                        .await?
                else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let refunded: i64 = gateway_requests::Entity::find()
                    .filter(gateway_requests::Column::ChargeKey.eq(request.charge_key.as_str()))
                    .filter(
                        gateway_requests::Column::Outcome
                            .eq(GatewayRequestOutcome::Refunded.as_str()),
                    )
                    .all(&tx)
                    .await?
                    .iter()
                    .map(|refund| refund.amount_minor)
                    .sum();
                let left = charge.amount_minor.saturating_sub(refunded);
                if request.amount_minor > left {
                    tx.rollback().await?;
                    return Err(GatewayError::Refused(format!(
                        "a refund of {} is more than the {left} left of charge {}",
                        request.amount_minor, request.charge_key
                    )));
                }
                let reference = format!("re_{}", Uuid::new_v4().simple());
                (RefundOutcome::Refunded { reference }, charge.currency)
            }
            // Declined: nothing to give back.
            Some(charge) => (RefundOutcome::NothingCharged, charge.currency),
        };
        let (recorded, reference) = match &outcome {
            RefundOutcome::Refunded { reference } => {
                (GatewayRequestOutcome::Refunded, Some(reference.clone()))
            }
            RefundOutcome::NothingCharged => (GatewayRequestOutcome::NothingCharged, None),
        };
        let row = gateway_requests::ActiveModel {
            key: Set(request.key.clone()),
            kind: Set(GatewayRequestKind::Refund.as_str().to_owned()),
            charge_key: Set(Some(request.charge_key.clone())),
            amount_minor: Set(request.amount_minor),
            currency: Set(currency),
            outcome: Set(recorded.as_str().to_owned()),
            reference: Set(reference),
            reason: Set(None),
            created_at: Set(Utc::now()),
        };
        for row in std::iter::once(row).chain(cancellation) {
            if !insert_new(&tx, row).await? {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// A transaction on the gateway's store. IMMEDIATE takes SQLite's write lock at
    /// BEGIN, so a request that reads and then writes never fails halfway with
    /// `database is locked`; on MySQL it is READ COMMITTED, as on PostgreSQL. It is
    /// `orchestration::sql::begin_write`, written again
    /// because a domain crate depends on no internal crate (the architecture test).
    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        let isolation_level = (self.db.get_database_backend() == DatabaseBackend::MySql)
            .then_some(IsolationLevel::ReadCommitted);
        self.db
            .begin_with_options(TransactionOptions {
                isolation_level,
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }
}

impl PaymentGateway for SimulatedGateway {
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> GatewayFuture<'a, ChargeOutcome> {
        Box::pin(self.simulate_charge(request))
    }

    fn refund<'a>(&'a self, request: &'a RefundRequest) -> GatewayFuture<'a, RefundOutcome> {
        Box::pin(self.simulate_refund(request))
    }
}

/// When a simulated failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The request is lost on the way: nothing happens.
    BeforeProcessing,
    /// The response is lost on the way back: the effect happened.
    AfterProcessing,
}

/// Fails the request if its response is to be lost.
fn depart(key: &str, failure: Option<Failure>) -> Result<(), GatewayError> {
    if failure == Some(Failure::AfterProcessing) {
        tracing::debug!(key, "simulated gateway: response lost after processing");
        return Err(GatewayError::Unavailable(
            "response lost after the request was processed (simulated)".to_owned(),
        ));
    }
    Ok(())
}

fn check_key(field: &str, key: &str) -> Result<(), GatewayError> {
    if validate::is_text(key, MAX_KEY_CHARS) {
        return Ok(());
    }
    Err(GatewayError::Refused(format!(
        "{field} must be 1 to {MAX_KEY_CHARS} characters, without surrounding whitespace or control characters"
    )))
}

fn check_amount(amount_minor: i64) -> Result<(), GatewayError> {
    if amount_minor > 0 {
        return Ok(());
    }
    Err(GatewayError::Refused(
        "amount_minor must be more than zero".to_owned(),
    ))
}

fn contended(key: &str) -> GatewayError {
    GatewayError::Unavailable(format!(
        "concurrent requests with key {key} kept conflicting (simulated)"
    ))
}

fn reused(key: &str) -> GatewayError {
    GatewayError::Refused(format!("key {key} was already used for another request"))
}

fn corrupt(row: &gateway_requests::Model) -> GatewayError {
    GatewayError::Database(DbErr::Custom(format!(
        "corrupt simulated gateway request {}",
        row.key
    )))
}

/// Inserts `row`; `false` if its key is taken (a concurrent request recorded first, and
/// the transaction must be rolled back).
async fn insert_new(
    tx: &DatabaseTransaction,
    row: gateway_requests::ActiveModel,
) -> Result<bool, DbErr> {
    match gateway_requests::Entity::insert(row)
        .exec_without_returning(tx)
        .await
    {
        Ok(_) => Ok(true),
        Err(err) => match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Ok(false),
            _ => Err(err),
        },
    }
}

/// The stored outcome of the charge under `request.key`, if `row` is that charge.
fn stored_charge(
    row: &gateway_requests::Model,
    request: &ChargeRequest,
) -> Result<ChargeOutcome, GatewayError> {
    // A charge key a refund spent has no currency: any currency matches it.
    let same = row.kind == GatewayRequestKind::Charge.as_str()
        && row.amount_minor == request.amount_minor
        && row
            .currency
            .as_ref()
            .is_none_or(|currency| *currency == request.currency);
    if !same {
        return Err(reused(&request.key));
    }
    match (GatewayRequestOutcome::parse(&row.outcome), &row.reference) {
        (Some(GatewayRequestOutcome::Charged), Some(reference)) => Ok(ChargeOutcome::Charged {
            reference: reference.clone(),
        }),
        (Some(GatewayRequestOutcome::Declined), _) => Ok(ChargeOutcome::Declined {
            reason: row.reason.clone().unwrap_or_default(),
        }),
        _ => Err(corrupt(row)),
    }
}

/// The stored outcome of the refund under `request.key`, if `row` is that refund.
fn stored_refund(
    row: &gateway_requests::Model,
    request: &RefundRequest,
) -> Result<RefundOutcome, GatewayError> {
    let same = row.kind == GatewayRequestKind::Refund.as_str()
        && row.charge_key.as_deref() == Some(request.charge_key.as_str())
        && row.amount_minor == request.amount_minor;
    if !same {
        return Err(reused(&request.key));
    }
    match (GatewayRequestOutcome::parse(&row.outcome), &row.reference) {
        (Some(GatewayRequestOutcome::Refunded), Some(reference)) => Ok(RefundOutcome::Refunded {
            reference: reference.clone(),
        }),
        (Some(GatewayRequestOutcome::NothingCharged), _) => Ok(RefundOutcome::NothingCharged),
        _ => Err(corrupt(row)),
    }
}

/// What a request to the simulated gateway asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayRequestKind {
    /// A charge.
    Charge,
    /// A refund.
    Refund,
}

impl GatewayRequestKind {
    /// Its name as stored: `charge` or `refund`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Refund => "refund",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "charge" => Some(Self::Charge),
            "refund" => Some(Self::Refund),
            _ => None,
        }
    }
}

impl fmt::Display for GatewayRequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the simulated gateway did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayRequestOutcome {
    /// A charge took the money.
    Charged,
    /// A charge was declined (or its key spent by a refund that came first).
    Declined,
    /// A refund gave money back.
    Refunded,
    /// A refund found nothing charged.
    NothingCharged,
}

impl GatewayRequestOutcome {
    /// Its name as stored: `charged`, `declined`, `refunded` or `nothing_charged`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charged => "charged",
            Self::Declined => "declined",
            Self::Refunded => "refunded",
            Self::NothingCharged => "nothing_charged",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "charged" => Some(Self::Charged),
            "declined" => Some(Self::Declined),
            "refunded" => Some(Self::Refunded),
            "nothing_charged" => Some(Self::NothingCharged),
            _ => None,
        }
    }
}

impl fmt::Display for GatewayRequestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the simulated gateway recorded: what a payment provider's dashboard
/// would show. Tests check with it that no key was ever charged twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayRequest {
    /// The request's key.
    pub key: String,
    /// Charge or refund.
    pub kind: GatewayRequestKind,
    /// For a refund, the key of the charge it refunds.
    pub charge_key: Option<String>,
    /// The amount asked for, in minor units.
    pub amount_minor: i64,
    /// The currency; none for a refund of nothing, and for a charge key a refund spent
    /// before the charge arrived.
    pub currency: Option<String>,
    /// What the gateway did.
    pub outcome: GatewayRequestOutcome,
    /// The gateway's reference (`ch_…` for a charge, `re_…` for a refund), if money moved.
    pub reference: Option<String>,
    /// Why a charge was declined.
    pub reason: Option<String>,
    /// When it was recorded (the gateway's clock).
    pub created_at: DateTime<Utc>,
}

/// Every request the simulated gateway on `db` recorded, oldest first.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn gateway_requests(db: &impl ConnectionTrait) -> Result<Vec<GatewayRequest>> {
    gateway_requests::Entity::find()
        .order_by_asc(gateway_requests::Column::CreatedAt)
        .order_by_asc(gateway_requests::Column::Key)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            let corrupt =
                |what: &str| Error::Corrupt(format!("gateway request {}: {what}", row.key));
            Ok(GatewayRequest {
                kind: GatewayRequestKind::parse(&row.kind)
                    .ok_or_else(|| corrupt("unknown kind"))?,
                outcome: GatewayRequestOutcome::parse(&row.outcome)
                    .ok_or_else(|| corrupt("unknown outcome"))?,
                key: row.key,
                charge_key: row.charge_key,
                amount_minor: row.amount_minor,
                currency: row.currency,
                reference: row.reference,
                reason: row.reason,
                created_at: row.created_at,
            })
        })
        .collect()
}
