//! What can go wrong in orders.

use sea_orm::DbErr;
use uuid::Uuid;

use crate::order::OrderStatus;

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// An orders operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No order has this id.
    #[error("no order with id {id}")]
    UnknownOrder {
        /// The id asked for.
        id: Uuid,
    },
    /// The lifecycle does not allow this change.
    #[error("order {id} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The order.
        id: Uuid,
        /// Its status.
        from: OrderStatus,
        /// The status asked for.
        to: OrderStatus,
    },
    /// An order with this id already exists.
    #[error("an order with id {id} already exists")]
    DuplicateOrder {
        /// The id.
        id: Uuid,
    },
    /// The units asked for cannot be refunded.
    #[error(transparent)]
    RefundRefused(#[from] crate::refund::RefundRefused),
    /// A stored row breaks the boundary's invariants.
    #[error("corrupt order data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("orders database error: {0}")]
    Database(#[from] DbErr),
}

/// Orders' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
