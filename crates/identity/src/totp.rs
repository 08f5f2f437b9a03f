//! Second factor: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of
//! skew), confirmed by a first valid code, each step accepted once, and one-time
//! recovery codes stored as hashes.
//!
//! The TOTP secret must be kept to verify codes, so it is stored as it is (base32) and
//! never logged: `TotpEnrolment`'s `Debug` hides it.

use std::fmt;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::entities::{recovery_codes, totp_secrets};
use crate::{AccountId, Error, Result};

/// Seconds per code.
const STEP_SECONDS: u64 = 30;
/// How many recovery codes a confirmed enrolment gets.
pub const RECOVERY_CODES: usize = 10;

/// What a client needs to set up its authenticator: shown once.
#[derive(Clone)]
pub struct TotpEnrolment {
    /// The secret, base32 (what an authenticator asks for when typed in).
    pub secret_base32: String,
    /// The `otpauth://totp/…` URI (what a QR code carries).
    pub otpauth_uri: String,
}

impl fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrolment(…)")
    }
}

/// A one-time recovery code as the user holds it (`xxxxx-xxxxx-xxxxx-xxxxx`, hex, 80
/// random bits). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// The code, to show once.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(…)")
    }
}

/// What confirming an enrolment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotpConfirmation {
    /// TOTP is on; the recovery codes are shown once.
    Confirmed {
        /// The account's recovery codes.
        recovery_codes: Vec<RecoveryCode>,
    },
    /// The code was not valid now (or there is no enrolment to confirm).
    InvalidCode,
}

fn totp(secret: &[u8], label: &str) -> Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .with_issuer(Some("Switchyard"))
        .with_account_name(label.replace(':', "_"))
        .build()
        .map_err(|err| Error::Corrupt(format!("totp: {err}")))
}

fn unix_seconds(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| Error::Hashing(format!("no randomness: {err}")))?;
    Ok(bytes)
}

fn code_hash(code: &str) -> String {
    crate::sessions::hex(&Sha256::digest(code.trim().to_lowercase().as_bytes()))
}

/// Starts (or restarts, while unconfirmed) TOTP enrolment for `account`, labelled
/// `label` in the authenticator (its email, say).
///
/// # Errors
/// [`Error::TotpAlreadyEnabled`] if a confirmed enrolment exists; the database failed.
pub async fn enroll_totp(
    conn: &impl ConnectionTrait,
    account: AccountId,
    label: &str,
    now: DateTime<Utc>,
) -> Result<TotpEnrolment> {
    let existing = totp_secrets::Entity::find_by_id(account.to_string())
        .lock_exclusive()
        .one(conn)
        .await?;
    if existing.as_ref().is_some_and(|row| row.confirmed) {
        return Err(Error::TotpAlreadyEnabled);
    }
    let secret = Secret::new(random_bytes::<20>()?.to_vec().into_boxed_slice());
    let secret_base32 = secret.to_base32();
    let otpauth_uri = totp(secret.as_bytes(), label)?
        .to_url()
        .map_err(|err| Error::Corrupt(format!("totp: {err}")))?;
    let row = totp_secrets::ActiveModel {
        account_id: Set(account.to_string()),
        secret_base32: Set(secret_base32.clone()),
        confirmed: Set(false),
        last_used_step: Set(-1),
        created_at: Set(now),
    };
    match existing {
        Some(_) => {
            row.update(conn).await?;
        }
        None => {
            totp_secrets::Entity::insert(row)
                .exec_without_returning(conn)
                .await?;
        }
    }
    Ok(TotpEnrolment {
        secret_base32,
        otpauth_uri,
    })
}

/// Whether `account` has confirmed TOTP (and so must give a code to log in).
///
/// # Errors
/// The database failed.
pub async fn totp_enabled(conn: &impl ConnectionTrait, account: AccountId) -> Result<bool> {
    Ok(totp_secrets::Entity::find_by_id(account.to_string())
        .one(conn)
        .await?
        .is_some_and(|row| row.confirmed))
}

/// Checks `code` against `account`'s secret at `now` and, if it is valid and its step
/// is later than the last one accepted, records the step: a code is accepted once.
/// `confirmed_only` refuses an enrolment not yet confirmed.
async fn accept_code(
    conn: &impl ConnectionTrait,
    account: AccountId,
    code: &str,
    now: DateTime<Utc>,
    confirmed_only: bool,
) -> Result<Option<totp_secrets::Model>> {
    let Some(row) = totp_secrets::Entity::find_by_id(account.to_string())
        .lock_exclusive()
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if confirmed_only && !row.confirmed {
        return Ok(None);
    }
    let secret = Secret::try_from_base32(&row.secret_base32)
        .map_err(|_| Error::Corrupt(format!("totp secret of account {account}")))?;
    let Some(step) = totp(secret.as_bytes(), "")?.check(code.trim(), unix_seconds(now)) else {
        return Ok(None);
    };
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    if step <= row.last_used_step {
        return Ok(None);
    }
    let mut used: totp_secrets::ActiveModel = row.into();
    used.last_used_step = Set(step);
    Ok(Some(used.update(conn).await?))
}

/// Confirms `account`'s enrolment with a first valid `code`; then TOTP is on and the
/// account gets [`RECOVERY_CODES`] new recovery codes (replacing any it had).
///
/// # Errors
/// The database failed.
pub async fn confirm_totp(
    conn: &impl ConnectionTrait,
    account: AccountId,
    code: &str,
    now: DateTime<Utc>,
) -> Result<TotpConfirmation> {
    let Some(row) = accept_code(conn, account, code, now, false).await? else {
        return Ok(TotpConfirmation::InvalidCode);
    };
    let mut confirmed: totp_secrets::ActiveModel = row.into();
    confirmed.confirmed = Set(true);
    confirmed.update(conn).await?;
    recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::AccountId.eq(account.to_string()))
        .exec(conn)
        .await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let hex = crate::sessions::hex(&random_bytes::<10>()?);
        let code = RecoveryCode(format!(
            "{}-{}-{}-{}",
            &hex[..5],
            &hex[5..10],
            &hex[10..15],
            &hex[15..]
        ));
        recovery_codes::Entity::insert(recovery_codes::ActiveModel {
            code_hash: Set(code_hash(code.as_str())),
            account_id: Set(account.to_string()),
            created_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        codes.push(code);
    }
    Ok(TotpConfirmation::Confirmed {
        recovery_codes: codes,
    })
}

/// Whether `code` is a valid TOTP code of `account`'s confirmed enrolment at `now`,
/// not used before (a replayed code is refused within its window).
///
/// # Errors
/// The database failed.
pub async fn verify_totp(
    conn: &impl ConnectionTrait,
    account: AccountId,
    code: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    Ok(accept_code(conn, account, code, now, true).await?.is_some())
}

/// Uses up one of `account`'s recovery codes: `true` if `code` was one (it is then
/// gone).
///
/// # Errors
/// The database failed.
pub async fn use_recovery_code(
    conn: &impl ConnectionTrait,
    account: AccountId,
    code: &str,
) -> Result<bool> {
    let deleted = recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::AccountId.eq(account.to_string()))
        .filter(recovery_codes::Column::CodeHash.eq(code_hash(code)))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// The code an authenticator with `secret_base32` shows at `at` (for tests and for
/// clients written in Rust).
///
/// # Errors
/// The secret is not base32.
pub fn totp_code(secret_base32: &str, at: DateTime<Utc>) -> Result<String> {
    let secret = Secret::try_from_base32(secret_base32)
        .map_err(|_| Error::Corrupt("a TOTP secret that is not base32".to_owned()))?;
    Ok(totp(secret.as_bytes(), "")?
        .generate(unix_seconds(at))
        .to_string())
}
