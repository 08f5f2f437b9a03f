//! What can go wrong in audit.

use sea_orm::DbErr;

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// An audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The entry cannot be stored as given (e.g. its data is too large).
    #[error("invalid audit entry: {0}")]
    Invalid(#[from] Invalid),
    /// A stored row breaks the boundary's invariants.
    #[error("corrupt audit data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("audit database error: {0}")]
    Database(#[from] DbErr),
}

/// Audit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
