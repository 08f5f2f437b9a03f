//! Cross-module use cases built on orchestration. Each workflow fetches, lets the
//! domain decide, acts and persists; business rules stay in the domain crates.
//!
//! Workflows return business outcomes as values (`PlaceOrderOutcome::OutOfStock`) and
//! infrastructure or contract failures as errors.

mod place_order;

pub use place_order::{PlaceOrder, PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome};
