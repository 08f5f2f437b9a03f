//! Accounts: create one, read one, move it through its lifecycle.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, SqlErr,
};
use uuid::Uuid;

use crate::entities::{accounts, sessions};
use crate::{AccountId, AccountKind, AccountStatus, DisplayName, Email, Error, Result};

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Its email, unique among accounts.
    pub email: Email,
    /// What it is called.
    pub display_name: DisplayName,
    /// Staff or customer.
    pub kind: AccountKind,
    /// Where its life starts: `Pending` (to be verified) or `Active`.
    pub status: AccountStatus,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Its email.
    pub email: Email,
    /// What it is called.
    pub display_name: DisplayName,
    /// Staff or customer.
    pub kind: AccountKind,
    /// Where it is in its life.
    pub status: AccountStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<accounts::Model> for Account {
    type Error = Error;

    fn try_from(row: accounts::Model) -> Result<Self> {
        let corrupt = |what: &str| Error::Corrupt(format!("account {}: {what}", row.id));
        Ok(Self {
            id: AccountId(Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?),
            email: Email::parse(&row.email).map_err(|_| corrupt("email"))?,
            display_name: DisplayName::parse(&row.display_name)
                .map_err(|_| corrupt("display name"))?,
            kind: AccountKind::parse(&row.kind).map_err(|_| corrupt("kind"))?,
            status: AccountStatus::parse(&row.status).map_err(|_| corrupt("status"))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Creates an account, at `now`.
///
/// # Errors
/// [`Error::DuplicateEmail`] if an account has this email; [`Error::Database`]
/// otherwise.
pub async fn create_account(
    conn: &impl ConnectionTrait,
    new: &NewAccount,
    now: DateTime<Utc>,
) -> Result<Account> {
    let account = Account {
        id: AccountId::new(),
        email: new.email.clone(),
        display_name: new.display_name.clone(),
        kind: new.kind,
        status: new.status,
        created_at: now,
        updated_at: now,
    };
    let inserted = accounts::Entity::insert(accounts::ActiveModel {
        id: Set(account.id.to_string()),
        email: Set(account.email.as_str().to_owned()),
        display_name: Set(account.display_name.as_str().to_owned()),
        kind: Set(account.kind.as_str().to_owned()),
        status: Set(account.status.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(conn)
    .await;
    match inserted {
        Ok(_) => Ok(account),
        Err(err) => Err(match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::DuplicateEmail {
                email: new.email.clone(),
            },
            _ => Error::Database(err),
        }),
    }
}

/// The account with id `id`, if there is one.
///
/// # Errors
/// The database failed, or the row is corrupt.
pub async fn get_account(conn: &impl ConnectionTrait, id: AccountId) -> Result<Option<Account>> {
    accounts::Entity::find_by_id(id.to_string())
        .one(conn)
        .await?
        .map(Account::try_from)
        .transpose()
}

/// The account with email `email`, if there is one.
///
/// # Errors
/// The database failed, or the row is corrupt.
pub async fn find_account_by_email(
    conn: &impl ConnectionTrait,
    email: &Email,
) -> Result<Option<Account>> {
    accounts::Entity::find()
        .filter(accounts::Column::Email.eq(email.as_str()))
        .one(conn)
        .await?
        .map(Account::try_from)
        .transpose()
}

/// Moves account `id` to `next`, if its lifecycle allows it, at `now`; returns the
/// account as it was before. An account that can no longer log in loses its sessions
/// in the same transaction, so they stop working at once. Setting the status it has
/// already changes nothing.
///
/// # Errors
/// [`Error::UnknownAccount`], [`Error::InvalidTransition`], or the database failed.
pub async fn set_status(
    conn: &impl ConnectionTrait,
    id: AccountId,
    next: AccountStatus,
    now: DateTime<Utc>,
) -> Result<Account> {
    let row = accounts::Entity::find_by_id(id.to_string())
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(Error::UnknownAccount { id })?;
    let before = Account::try_from(row.clone())?;
    if before.status == next {
        return Ok(before);
    }
    if !before.status.can_become(next) {
        return Err(Error::InvalidTransition {
            from: before.status,
            to: next,
        });
    }
    let mut active: accounts::ActiveModel = row.into();
    active.status = Set(next.as_str().to_owned());
    active.updated_at = Set(now);
    active.update(conn).await?;
    if !next.can_log_in() {
        sessions::Entity::delete_many()
            .filter(sessions::Column::AccountId.eq(id.to_string()))
            .exec(conn)
            .await?;
    }
    Ok(before)
}

/// Up to `limit` accounts in id order (oldest first: ids are time-ordered), starting
/// after `after`.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn list_accounts(
    conn: &impl ConnectionTrait,
    after: Option<AccountId>,
    limit: u64,
) -> Result<Vec<Account>> {
    let mut query = accounts::Entity::find();
    if let Some(after) = after {
        query = query.filter(accounts::Column::Id.gt(after.to_string()));
    }
    query
        .order_by_asc(accounts::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Account::try_from)
        .collect()
}
