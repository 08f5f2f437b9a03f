//! What can go wrong in inventory.

use sea_orm::DbErr;
use uuid::Uuid;

use crate::types::Sku;

/// An inventory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is less stock available than requested.
    #[error("out of stock: {requested} of {sku} requested, {available} available")]
    OutOfStock {
        /// The product.
        sku: Sku,
        /// The quantity asked for.
        requested: u32,
        /// The quantity available when asked.
        available: i64,
    },
    /// No product has this SKU.
    #[error("no product with SKU {sku}")]
    UnknownProduct {
        /// The SKU asked for.
        sku: Sku,
    },
    /// A product with this SKU already exists.
    #[error("a product with SKU {sku} already exists")]
    DuplicateSku {
        /// The SKU.
        sku: Sku,
    },
    /// No reservation has this id.
    #[error("no reservation with id {id}")]
    UnknownReservation {
        /// The id asked for.
        id: Uuid,
    },
    /// The reservation is not held any more (already released, or committed).
    #[error("reservation {id} is not held")]
    ReservationNotHeld {
        /// The reservation.
        id: Uuid,
    },
    /// Fewer units of the product are committed to the reference than are returned.
    #[error("{reference} has {committed} of {sku} committed, fewer than the {returned} returned")]
    NotCommitted {
        /// The reference (e.g. the order id).
        reference: String,
        /// The product.
        sku: Sku,
        /// The units committed to it.
        committed: i64,
        /// The units returned.
        returned: u32,
    },
    /// A feed is not where an import of it expected: another import of it ran meanwhile.
    #[error("feed {feed} is at row {found}, not {expected}: another import of it ran meanwhile")]
    FeedMoved {
        /// The feed's version.
        feed: String,
        /// The position the import expected.
        expected: u64,
        /// The position it found.
        found: u64,
    },
    /// Restocking would overflow the stock level.
    #[error("stock level of {sku} would overflow")]
    StockOverflow {
        /// The product.
        sku: Sku,
    },
    /// A stored row breaks the boundary's invariants (e.g. an unknown status).
    #[error("corrupt inventory data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("inventory database error: {0}")]
    Database(#[from] DbErr),
}

/// Inventory's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
