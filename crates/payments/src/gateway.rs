//! The port to a payment gateway: charge and refund, each under the caller's key.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sea_orm::DbErr;
use serde::{Deserialize, Serialize};

use crate::payments::Payment;

/// What a gateway call returns. Boxed because [`PaymentGateway`] is used as a trait
/// object.
pub type GatewayFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send + 'a>>;

/// A payment gateway: charges a customer and refunds a charge, each request under a key
/// the caller chooses.
///
/// A gateway is idempotent per key: a request repeated with its key (after a timeout or
/// a lost response) returns the first one's outcome and moves no money again, and a key
/// reused for a different request is refused. So on
/// [`GatewayError::is_transient`] errors, retry with the same key.
///
/// Dyn-compatible, so that the application picks the implementation at start
/// (`Arc<dyn PaymentGateway>`: the simulated gateway, or a real one). Native `async fn`
/// in a trait makes it not dyn-compatible, so the methods return boxed futures: one
/// allocation per call, next to a network round trip.
pub trait PaymentGateway: Send + Sync + fmt::Debug + 'static {
    /// Charges `request.amount_minor` to the customer.
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> GatewayFuture<'a, ChargeOutcome>;

    /// Refunds the charge made under `request.charge_key`, or reports that nothing was
    /// charged under it.
    fn refund<'a>(&'a self, request: &'a RefundRequest) -> GatewayFuture<'a, RefundOutcome>;
}

/// A charge to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// The idempotency key: the same key always means the same charge.
    pub key: String,
    /// How much, in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Who pays.
    pub customer_id: String,
    /// The caller's reference for the charge (e.g. the order).
    pub reference: String,
}

impl ChargeRequest {
    /// The charge for `payment`, under the payment's idempotency key.
    #[must_use]
    pub fn for_payment(payment: &Payment) -> Self {
        Self {
            key: payment.idempotency_key.clone(),
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
            customer_id: payment.customer_id.clone(),
            reference: payment.order_reference.clone(),
        }
    }
}

/// What became of a charge. Both are answers: a decline is not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChargeOutcome {
    /// The money was taken.
    Charged {
        /// The gateway's reference for the charge.
        reference: String,
    },
    /// The gateway refused to take it (e.g. the card was declined).
    Declined {
        /// Why, in the gateway's words.
        reason: String,
    },
}

/// A refund to make: the whole or part of the charge made under `charge_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// The refund's own idempotency key (not the charge's).
    pub key: String,
    /// The key the charge was requested under.
    pub charge_key: String,
    /// How much to give back, in minor units.
    pub amount_minor: i64,
}

impl RefundRequest {
    /// The refund of the whole of `payment`'s charge, under a key derived from the
    /// payment's id (`refund:<id>`): stable across retries, and distinct from every
    /// charge key.
    #[must_use]
    pub fn for_payment(payment: &Payment) -> Self {
        Self {
            key: format!("refund:{}", payment.id),
            charge_key: payment.idempotency_key.clone(),
            amount_minor: payment.amount_minor,
        }
    }
}

/// What became of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefundOutcome {
    /// The money was given back.
    Refunded {
        /// The gateway's reference for the refund.
        reference: String,
    },
    /// Nothing was charged under the charge key (never requested, or declined), so
    /// there is nothing to give back.
    NothingCharged,
}

/// A gateway call failed without an answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway could not be reached or did not answer. The request may or may not
    /// have taken effect: retry with the same key to find out.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the request for good (e.g. its key was used before with
    /// other parameters). Retrying gets the same answer.
    #[error("payment gateway refused the request: {0}")]
    Refused(String),
    /// The simulated gateway's own store failed. Like a real gateway's internal
    /// error, retrying with the same key is safe.
    #[error("simulated payment gateway's store failed: {0}")]
    Database(#[from] DbErr),
}

impl GatewayError {
    /// Whether retrying with the same key may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Database(_) => true,
            Self::Refused(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn outcomes_serialize_tagged() {
        let charged = ChargeOutcome::Charged {
            reference: "ch_1".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&charged).unwrap(),
            json!({"outcome": "charged", "reference": "ch_1"})
        );
        let declined: ChargeOutcome =
            serde_json::from_value(json!({"outcome": "declined", "reason": "no"})).unwrap();
        assert_eq!(
            declined,
            ChargeOutcome::Declined {
                reason: "no".to_owned()
            }
        );
        assert_eq!(
            serde_json::to_value(RefundOutcome::NothingCharged).unwrap(),
            json!({"outcome": "nothing_charged"})
        );
        let refunded: RefundOutcome =
            serde_json::from_value(json!({"outcome": "refunded", "reference": "re_1"})).unwrap();
        assert_eq!(
            refunded,
            RefundOutcome::Refunded {
                reference: "re_1".to_owned()
            }
        );
    }

    #[test]
    fn only_refusals_are_permanent() {
        assert!(GatewayError::Unavailable("timeout".to_owned()).is_transient());
        assert!(GatewayError::Database(DbErr::Custom("down".to_owned())).is_transient());
        assert!(!GatewayError::Refused("key reused".to_owned()).is_transient());
    }
}
