//! What can go wrong in payments.

use sea_orm::DbErr;

use crate::payments::PaymentStatus;

/// A payments operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value cannot be stored as given (says which and why).
    #[error("invalid payment: {0}")]
    Invalid(String),
    /// The amount is above the verification threshold and the customer is not verified.
    #[error(
        "customer {customer_id} must be verified to pay {amount_minor} (more than {threshold_minor})"
    )]
    VerificationRequired {
        /// The customer.
        customer_id: String,
        /// The amount asked for, in minor units.
        amount_minor: i64,
        /// The most an unverified customer may pay, in minor units.
        threshold_minor: i64,
    },
    /// A payment with this idempotency key exists with other details.
    #[error("idempotency key {key} was already used for another payment")]
    KeyReused {
        /// The key.
        key: String,
    },
    /// No payment has this idempotency key.
    #[error("no payment with idempotency key {key}")]
    UnknownPayment {
        /// The key asked for.
        key: String,
    },
    /// The payment's status cannot change to the one asked for.
    #[error("payment {key} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The payment's idempotency key.
        key: String,
        /// Its status.
        from: PaymentStatus,
        /// The status asked for.
        to: PaymentStatus,
    },
    /// The order has no charged payment to refund.
    #[error("order {order_reference} has no charged payment")]
    NothingPaid {
        /// The order.
        order_reference: String,
    },
    /// Another refund of the payment is open.
    #[error("refund {refund_id} of this payment is still in progress")]
    RefundInProgress {
        /// The open refund.
        refund_id: uuid::Uuid,
    },
    /// The refund would give back more than was charged and not refunded yet.
    #[error("a refund of {requested_minor} asked for, {refundable_minor} may be refunded")]
    OverRefund {
        /// The amount asked for, in minor units.
        requested_minor: i64,
        /// What may still be given back, in minor units.
        refundable_minor: i64,
    },
    /// No refund intent has this id.
    #[error("no refund with id {id}")]
    UnknownRefund {
        /// The id asked for.
        id: uuid::Uuid,
    },
    /// The refund intent is closed with another outcome.
    #[error("refund {id} is {status} already")]
    RefundClosed {
        /// The refund.
        id: uuid::Uuid,
        /// Its status.
        status: crate::refunds::RefundStatus,
    },
    /// A stored row breaks the boundary's invariants (e.g. an unknown status).
    #[error("corrupt payments data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("payments database error: {0}")]
    Database(#[from] DbErr),
}

/// Payments' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
