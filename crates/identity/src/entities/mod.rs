//! SeaORM entities of schema `identity`, private to this crate.

pub(crate) mod account_roles;
pub(crate) mod accounts;
pub(crate) mod credentials;
pub(crate) mod login_challenges;
pub(crate) mod login_failures;
pub(crate) mod recovery_codes;
pub(crate) mod roles;
pub(crate) mod sessions;
pub(crate) mod totp_secrets;
pub(crate) mod verification_tokens;
