//! Login challenges: after a correct password, an account with TOTP gets a short-lived
//! challenge token (the same shape as a session token, stored as its SHA-256) to send
//! back with its code.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::entities::login_challenges;
use crate::{AccountId, Error, Result, SessionToken};

/// A challenge token: what the client sends back with its TOTP code.
pub type ChallengeToken = SessionToken;

/// Issues a challenge for `account` at `now`, valid for `ttl`.
///
/// # Errors
/// The database failed (or the system had no randomness).
pub async fn issue_challenge(
    conn: &impl ConnectionTrait,
    account: AccountId,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<ChallengeToken> {
    let token = ChallengeToken::generate()?;
    login_challenges::Entity::insert(login_challenges::ActiveModel {
        token_hash: Set(token.stored_hash()),
        account_id: Set(account.to_string()),
        expires_at: Set(now + ttl),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(token)
}

/// The account challenge `token` is for, if it exists and has not expired at `now`
/// (an expired one is deleted).
///
/// # Errors
/// The database failed, or the row is corrupt.
pub async fn challenge_account(
    conn: &impl ConnectionTrait,
    token: &ChallengeToken,
    now: DateTime<Utc>,
) -> Result<Option<AccountId>> {
    let Some(row) = login_challenges::Entity::find_by_id(token.stored_hash())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if row.expires_at <= now {
        end_challenge(conn, token).await?;
        return Ok(None);
    }
    let id = Uuid::parse_str(&row.account_id)
        .map_err(|_| Error::Corrupt(format!("challenge for account `{}`", row.account_id)))?;
    Ok(Some(AccountId(id)))
}

/// Ends challenge `token` (once it is answered).
///
/// # Errors
/// The database failed.
pub async fn end_challenge(conn: &impl ConnectionTrait, token: &ChallengeToken) -> Result<()> {
    login_challenges::Entity::delete_many()
        .filter(login_challenges::Column::TokenHash.eq(token.stored_hash()))
        .exec(conn)
        .await?;
    Ok(())
}
