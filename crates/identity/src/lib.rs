//! The identity boundary: accounts and their lifecycle, password credentials
//! (argon2id), a TOTP second factor with one-time recovery codes, sessions (opaque
//! tokens stored only as hashes), and roles that grant abilities.
//!
//! The decisions live here: which lifecycle transitions are allowed
//! ([`AccountStatus::can_become`]), whether a password matches and whether its hash
//! must be renewed ([`verify_password`]), whether a session token is valid now
//! ([`authenticate`]). Password hashing is CPU work and synchronous: callers in async
//! code run it on a blocking thread.
//!
//! Every persistence function takes the connection first (`&impl ConnectionTrait`), so
//! the caller decides the transaction; nothing here commits. Functions that change
//! state lock the row they decide on (`FOR UPDATE`) and then write: call them inside a
//! transaction (a unit-of-work step). Tables live in schema [`SCHEMA`].

mod accounts;
mod challenges;
mod credentials;
mod entities;
mod error;
mod events;
mod registrations;
mod roles;
mod sessions;
mod throttle;
mod totp;
mod types;

pub use accounts::{
    Account, NewAccount, create_account, find_account_by_email, get_account, list_accounts,
    set_status,
};
pub use challenges::{ChallengeToken, challenge_account, end_challenge, issue_challenge};
pub use credentials::{
    PasswordCheck, PasswordHash, PasswordPolicy, hash_password, set_password, stored_password,
    upgrade_password_hash, verify_password,
};
pub use error::{Error, Invalid, Result};
pub use events::{AccountRegistered, AccountVerified, LoginAttempted};
pub use registrations::{
    VerificationToken, expire_registrations, issue_verification, verify_email,
};
pub use roles::{abilities_of, define_role, grant_role, revoke_role, roles_of};
pub use sessions::{
    Authenticated, LAST_USE_PRECISION, Session, SessionToken, authenticate, list_sessions,
    revoke_all_sessions, revoke_session, start_session,
};
pub use throttle::{ThrottlePolicy, clear_failures, record_failure, throttled};
pub use totp::{
    RECOVERY_CODES, RecoveryCode, TotpConfirmation, TotpEnrolment, confirm_totp, enroll_totp,
    totp_code, totp_enabled, use_recovery_code, verify_totp,
};
pub use types::{
    ABILITIES, Ability, AccountId, AccountKind, AccountStatus, DisplayName, EVERY_ABILITY, Email,
    Password, RoleName,
};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
