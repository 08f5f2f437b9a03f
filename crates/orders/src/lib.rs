//! The orders boundary: orders, their lines, and the status lifecycle
//! (pending → confirmed → partly refunded → refunded, or cancelled).
//!
//! Every function takes the connection first (`&impl ConnectionTrait`), so the caller
//! decides the transaction; nothing here commits. Functions that change state lock the
//! row they decide on (`FOR UPDATE`) and then write, in several statements: call them
//! inside a transaction (a unit-of-work step), where the lock holds until the commit. Tables live in schema [`SCHEMA`].

mod entities;
mod error;
mod events;
mod order;
mod refund;
mod store;

pub use error::{Error, Invalid, Result};
pub use events::{OrderPlaced, OrderRefunded, PlacedLine};
pub use order::{CustomerId, LineRequest, NewOrder, Order, OrderLine, OrderStatus};
pub use refund::{RefundLine, RefundPlan, RefundRefused};
pub use store::{OrderFilter, cancel, confirm, create, get, list, record_refund};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
