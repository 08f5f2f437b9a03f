//! The inventory boundary: the product catalog, stock levels, reservations and product
//! feeds imported into them.
//!
//! Every function takes the connection first (`&impl ConnectionTrait`), so the caller
//! decides the transaction; nothing here commits. Functions that change state lock the
//! row they decide on (`FOR UPDATE`) and then write, in several statements: call them
//! inside a transaction (a unit-of-work step), where the lock holds until the commit. Tables live in schema [`SCHEMA`].

mod entities;
mod error;
mod products;
mod reservations;
mod sync;
mod types;

pub use error::{Error, Result};
pub use products::{NewProduct, Product, add_product, find_products, get, list_products, restock};
pub use reservations::{
    Reservation, ReservationStatus, commit_holds, expired_holds, release, reservations_for,
    reserve, return_stock,
};
pub use sync::{
    FeedCounts, FeedImport, FeedReject, FeedRow, Validators, feed_import, feed_rejects,
    finish_feed, import_feed_chunk, last_import_from, recent_feed_imports, set_validators,
    start_feed,
};
pub use types::{Currency, Invalid, Money, ProductName, Quantity, Sku};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
