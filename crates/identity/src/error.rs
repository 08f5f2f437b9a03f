//! What can go wrong in identity.

use sea_orm::DbErr;

use crate::{AccountId, AccountStatus, Email};

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// An identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An account with this email exists.
    #[error("an account with email {email} exists")]
    DuplicateEmail {
        /// The normalised email.
        email: Email,
    },
    /// No account has this id.
    #[error("no account {id}")]
    UnknownAccount {
        /// The id asked for.
        id: AccountId,
    },
    /// The lifecycle does not allow this change.
    #[error("an account that is {from} cannot become {to}")]
    InvalidTransition {
        /// The account's status.
        from: AccountStatus,
        /// The status asked for.
        to: AccountStatus,
    },
    /// No role of this name is defined.
    #[error("no role `{name}`")]
    UnknownRole {
        /// The role asked for.
        name: String,
    },
    /// TOTP is already on for the account: it cannot be enrolled again.
    #[error("TOTP is already enabled for the account")]
    TotpAlreadyEnabled,
    /// A password could not be hashed (the hasher refused its parameters).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    /// A stored row breaks the boundary's invariants.
    #[error("corrupt identity data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("identity database error: {0}")]
    Database(#[from] DbErr),
}

/// The result type of identity.
pub type Result<T, E = Error> = std::result::Result<T, E>;
