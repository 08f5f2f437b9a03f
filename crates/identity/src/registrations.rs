//! Registrations: a pending customer account verifies its email with a token sent to
//! it (the same shape as a session token, stored as its SHA-256, expiring), which
//! makes it active. A registration never verified is removed once its tokens expired.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use crate::entities::{accounts, credentials, verification_tokens};
use crate::{Account, AccountId, AccountStatus, Error, Result, SessionToken, get_account};

/// A verification token: sent to the email, redeemed once.
pub type VerificationToken = SessionToken;

/// Issues a verification token for pending `account` at `now`, valid for `ttl`; any
/// token it had stops working.
///
/// # Errors
/// The database failed (or the system had no randomness).
pub async fn issue_verification(
    conn: &impl ConnectionTrait,
    account: AccountId,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<VerificationToken> {
    verification_tokens::Entity::delete_many()
        .filter(verification_tokens::Column::AccountId.eq(account.to_string()))
        .exec(conn)
        .await?;
    let token = VerificationToken::generate()?;
    verification_tokens::Entity::insert(verification_tokens::ActiveModel {
        token_hash: Set(token.stored_hash()),
        account_id: Set(account.to_string()),
        expires_at: Set(now + ttl),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(token)
}

/// Redeems `token` at `now`: its pending account becomes active (and the token is
/// gone). `None` for a token that is unknown, used or expired, or whose account is no
/// longer pending.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn verify_email(
    conn: &impl ConnectionTrait,
    token: &VerificationToken,
    now: DateTime<Utc>,
) -> Result<Option<Account>> {
    let Some(row) = verification_tokens::Entity::find_by_id(token.stored_hash())
        .lock_exclusive()
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    verification_tokens::Entity::delete_by_id(row.token_hash.clone())
        .exec(conn)
        .await?;
    if row.expires_at <= now {
        return Ok(None);
    }
    let id = AccountId(
        Uuid::parse_str(&row.account_id)
            .map_err(|_| Error::Corrupt(format!("verification for `{}`", row.account_id)))?,
    );
    match get_account(conn, id).await? {
        Some(account) if account.status == AccountStatus::Pending => {
            crate::set_status(conn, id, AccountStatus::Active, now).await?;
            Ok(get_account(conn, id).await?)
        }
        _ => Ok(None),
    }
}

/// Removes up to `limit` pending accounts created before `cutoff` that hold no
/// unexpired verification token at `now`, with their credentials and tokens; returns
/// how many.
///
/// # Errors
/// The database failed.
pub async fn expire_registrations(
    conn: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<u64> {
    let stale: Vec<String> = accounts::Entity::find()
        .filter(accounts::Column::Status.eq(AccountStatus::Pending.as_str()))
        .filter(accounts::Column::CreatedAt.lt(cutoff))
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect();
    let mut removed = 0;
    for id in stale {
        let live = verification_tokens::Entity::find()
            .filter(verification_tokens::Column::AccountId.eq(id.as_str()))
            .filter(verification_tokens::Column::ExpiresAt.gt(now))
            .one(conn)
            .await?;
        if live.is_some() {
            continue;
        }
        verification_tokens::Entity::delete_many()
            .filter(verification_tokens::Column::AccountId.eq(id.as_str()))
            .exec(conn)
            .await?;
        credentials::Entity::delete_by_id(id.clone())
            .exec(conn)
            .await?;
        // Only while still pending: a verification that raced this keeps its account.
        let deleted = accounts::Entity::delete_many()
            .filter(accounts::Column::Id.eq(id.as_str()))
            .filter(accounts::Column::Status.eq(AccountStatus::Pending.as_str()))
            .exec(conn)
            .await?;
        removed += deleted.rows_affected;
    }
    Ok(removed)
}
