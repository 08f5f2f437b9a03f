//! What can go wrong in {{name}}.

use sea_orm::DbErr;

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// A {{name}} operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stored row breaks the boundary's invariants.
    #[error("corrupt {{name}} data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("{{name}} database error: {0}")]
    Database(#[from] DbErr),
}

/// The result type of {{name}}.
pub type Result<T, E = Error> = std::result::Result<T, E>;
