//! What can go wrong in notifications.

use sea_orm::DbErr;

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// A notifications operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value breaks a rule of the boundary.
    #[error("invalid notification: {0}")]
    Invalid(#[from] Invalid),
    /// A template cannot be rendered with the data given.
    #[error("cannot render template {0}")]
    Template(String),
    /// A stored row breaks the boundary's invariants.
    #[error("corrupt notifications data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("notifications database error: {0}")]
    Database(#[from] DbErr),
}

/// The result type of notifications.
pub type Result<T, E = Error> = std::result::Result<T, E>;
