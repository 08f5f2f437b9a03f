//! SeaORM entities of schema `payments`, private to this crate.

pub(crate) mod gateway_requests;
pub(crate) mod payments;
pub(crate) mod refund_intents;
pub(crate) mod refunds;
pub(crate) mod verified_customers;
