//! Sessions: an opaque random token (256 bits) given to the client once and stored only
//! as its SHA-256, with an expiry, the time of last use and the client's user agent.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entities::sessions;
use crate::{Account, AccountId, Error, Result, get_account};

/// The most characters of a user agent kept with a session.
const USER_AGENT_CHARS: usize = 512;

/// A session's token as the client holds it: 64 lowercase hex digits (256 random bits).
/// `Debug` shows `SessionToken(…)`; [`SessionToken::as_str`] is for handing it over.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub(crate) fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|err| Error::Hashing(format!("no randomness for a token: {err}")))?;
        Ok(Self(hex(&bytes)))
    }

    /// A token as sent by a client, if it has a token's shape.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let shaped = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        shaped.then(|| Self(text.to_owned()))
    }

    /// The token, to give to the client (once).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: the token's SHA-256, hex. A token has 256 random bits, so a
    /// fast hash suffices (there is nothing to guess).
    pub(crate) fn stored_hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// How far a session's `last_used_at` may lag its last use.
pub const LAST_USE_PRECISION: Duration = Duration::minutes(1);

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id (not its token).
    pub id: Uuid,
    /// Whose it is.
    pub account_id: AccountId,
    /// The client's user agent when it began (at most 512 characters).
    pub user_agent: String,
    /// When it began.
    pub created_at: DateTime<Utc>,
    /// When it was last used.
    pub last_used_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

impl TryFrom<sessions::Model> for Session {
    type Error = Error;

    fn try_from(row: sessions::Model) -> Result<Self> {
        let corrupt = |what: &str| Error::Corrupt(format!("session {}: {what}", row.id));
        Ok(Self {
            id: Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?,
            account_id: AccountId(
                Uuid::parse_str(&row.account_id).map_err(|_| corrupt("account id"))?,
            ),
            user_agent: row.user_agent,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
        })
    }
}

/// A valid session and its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The session.
    pub session: Session,
    /// Its account, which may log in.
    pub account: Account,
}

/// Begins a session for `account` at `now`, lasting `ttl`; returns it with its token,
/// which exists nowhere else.
///
/// # Errors
/// The database failed (or the system had no randomness).
pub async fn start_session(
    conn: &impl ConnectionTrait,
    account: AccountId,
    user_agent: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(Session, SessionToken)> {
    let token = SessionToken::generate()?;
    let user_agent: String = user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_CHARS)
        .collect();
    let session = Session {
        id: Uuid::now_v7(),
        account_id: account,
        user_agent,
        created_at: now,
        last_used_at: now,
        expires_at: now + ttl,
    };
    sessions::Entity::insert(sessions::ActiveModel {
        id: Set(session.id.to_string()),
        account_id: Set(account.to_string()),
        token_hash: Set(token.stored_hash()),
        user_agent: Set(session.user_agent.clone()),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(session.expires_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok((session, token))
}

/// The session `token` opens at `now`, with its account: `None` if there is no such
/// session, it has expired (then it is deleted), or its account may not log in.
/// Records the use (to within [`LAST_USE_PRECISION`]).
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn authenticate(
    conn: &impl ConnectionTrait,
    token: &SessionToken,
    now: DateTime<Utc>,
) -> Result<Option<Authenticated>> {
    let Some(row) = sessions::Entity::find()
        .filter(sessions::Column::TokenHash.eq(token.stored_hash()))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if row.expires_at <= now {
        sessions::Entity::delete_by_id(row.id).exec(conn).await?;
        return Ok(None);
    }
    let mut session = Session::try_from(row.clone())?;
    let Some(account) = get_account(conn, session.account_id).await? else {
        return Ok(None);
    };
    if !account.status.can_log_in() {
        return Ok(None);
    }
    // Recorded to the minute: a write per request would make every read a write.
    if now - session.last_used_at >= LAST_USE_PRECISION {
        let mut used: sessions::ActiveModel = row.into();
        used.last_used_at = Set(now);
        used.update(conn).await?;
        session.last_used_at = now;
    }
    Ok(Some(Authenticated { session, account }))
}

/// Account `account`'s sessions, oldest first.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn list_sessions(
    conn: &impl ConnectionTrait,
    account: AccountId,
) -> Result<Vec<Session>> {
    sessions::Entity::find()
        .filter(sessions::Column::AccountId.eq(account.to_string()))
        .order_by_asc(sessions::Column::CreatedAt)
        .order_by_asc(sessions::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(Session::try_from)
        .collect()
}

/// Ends session `id` of account `account`; `false` if it has no such session.
///
/// # Errors
/// The database failed.
pub async fn revoke_session(
    conn: &impl ConnectionTrait,
    account: AccountId,
    id: Uuid,
) -> Result<bool> {
    let deleted = sessions::Entity::delete_many()
        .filter(sessions::Column::Id.eq(id.to_string()))
        .filter(sessions::Column::AccountId.eq(account.to_string()))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// Ends every session of account `account`; returns how many there were.
///
/// # Errors
/// The database failed.
pub async fn revoke_all_sessions(conn: &impl ConnectionTrait, account: AccountId) -> Result<u64> {
    let deleted = sessions::Entity::delete_many()
        .filter(sessions::Column::AccountId.eq(account.to_string()))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}
