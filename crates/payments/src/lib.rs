//! The payments boundary: payments opened under an idempotency key and moved through
//! their life by a payment gateway's answers, their refunds, customer verification, and
//! the port to the gateway with a simulated implementation.
//!
//! The ledger functions ([`open`], [`record_charge`], [`record_refund`], …) take the
//! connection first (`&impl ConnectionTrait`), so the caller decides the transaction;
//! nothing here commits. Functions that change a payment lock its row (`FOR UPDATE`)
//! and then write: call them inside a transaction (a unit-of-work step).
//!
//! The gateway is different: it stands for an external API, so [`PaymentGateway`] calls
//! are not part of any transaction. Call the gateway between units of work, with the
//! payment's key, and record its answer in the next one; on a transient error, retry
//! with the same key. [`SimulatedGateway`] keeps its own records, in its own
//! transactions, on this boundary's database. Tables live in schema [`SCHEMA`].

mod entities;
mod error;
mod gateway;
mod payments;
mod refunds;
mod simulated;
mod validate;
mod verification;

pub use error::{Error, Result};
pub use gateway::{
    ChargeOutcome, ChargeRequest, GatewayError, GatewayFuture, PaymentGateway, RefundOutcome,
    RefundRequest,
};
pub use payments::{
    NewPayment, Payment, PaymentStatus, Refund, open, payment_by_key, payments_for_order,
    record_charge, record_refund, refunds_for,
};
pub use refunds::{
    RefundIntent, RefundStatus, close_refund, lock_for_refund, record_refunded, refund_intent,
    refund_intents_for_order, refund_intents_with_status, request_refund, settle_refund,
};
pub use simulated::{
    GatewayRequest, GatewayRequestKind, GatewayRequestOutcome, SimulatedGateway,
    SimulatedGatewayOptions, gateway_requests,
};
pub use verification::{PaymentPolicy, is_verified, verified_at, verify_customer};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
