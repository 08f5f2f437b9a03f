//! Notifications: queued once per (cause, recipient, template), claimed by one
//! deliverer at a time, and recorded attempt by attempt until sent or dead.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::entities::{delivery_attempts, notifications};
use crate::{Error, Invalid, Result};

/// Where a notification goes: an email address as given (at most 254 characters, one
/// `@`, no spaces or control characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient(String);

impl Recipient {
    /// Checks `address`.
    ///
    /// # Errors
    /// Not an address of that shape.
    pub fn parse(address: &str) -> Result<Self, Invalid> {
        let ok = address.len() <= 254
            && address.matches('@').count() == 1
            && !address.starts_with('@')
            && !address.ends_with('@')
            && !address.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(Invalid(
                "must be an email address of at most 254 characters",
            ));
        }
        Ok(Self(address.to_owned()))
    }

    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its (next) delivery attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Given up: every attempt failed, or the failure cannot pass on a retry.
    Dead,
}

impl Status {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }

    /// The status named `text` (as [`Self::as_str`] names it), if any.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A notification to queue.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// What caused it (an event's id): with the recipient and the template, it makes
    /// the notification unique, so a redelivered event notifies once.
    pub cause: String,
    /// Who gets it.
    pub recipient: Recipient,
    /// The template that renders it ([`crate::TEMPLATES`]).
    pub template: String,
    /// What the template shows.
    pub data: serde_json::Value,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its id.
    pub id: Uuid,
    /// What caused it.
    pub cause: String,
    /// Who gets it.
    pub recipient: String,
    /// `email`.
    pub channel: String,
    /// Its template.
    pub template: String,
    /// What the template shows.
    pub data: serde_json::Value,
    /// How it stands.
    pub status: Status,
    /// Delivery attempts begun.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it may be attempted (again); while an attempt runs, when its claim lapses.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

impl TryFrom<notifications::Model> for Notification {
    type Error = Error;

    fn try_from(row: notifications::Model) -> Result<Self> {
        let corrupt = |what: &str| Error::Corrupt(format!("notification {}: {what}", row.id));
        Ok(Self {
            id: Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?,
            data: serde_json::from_str(&row.data).map_err(|_| corrupt("data"))?,
            status: Status::parse(&row.status).ok_or_else(|| corrupt("status"))?,
            attempts: u32::try_from(row.attempts).map_err(|_| corrupt("attempts"))?,
            cause: row.cause,
            recipient: row.recipient,
            channel: row.channel,
            template: row.template,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            sent_at: row.sent_at,
        })
    }
}

/// Queues `new` at `now`, due at once; a notification of the same cause, recipient and
/// template is not queued again. Returns the notification's id and whether it is new.
///
/// # Errors
/// [`Error::Invalid`] for a cause longer than 255 or a template name longer than 64
/// characters; the database failed.
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    new: &NewNotification,
    now: DateTime<Utc>,
) -> Result<(Uuid, bool)> {
    if new.cause.is_empty() || new.cause.len() > 255 {
        return Err(Error::Invalid(Invalid("the cause must be 1 to 255 bytes")));
    }
    if new.template.is_empty() || new.template.len() > 64 {
        return Err(Error::Invalid(Invalid(
            "the template must be 1 to 64 bytes",
        )));
    }
    let id = Uuid::now_v7();
    notifications::Entity::insert(notifications::ActiveModel {
        id: Set(id.to_string()),
        cause: Set(new.cause.clone()),
        recipient: Set(new.recipient.as_str().to_owned()),
        channel: Set("email".to_owned()),
        template: Set(new.template.clone()),
        data: Set(new.data.to_string()),
        status: Set(Status::Pending.as_str().to_owned()),
        attempts: Set(0),
        last_error: Set(None),
        next_attempt_at: Set(now),
        created_at: Set(now),
        sent_at: Set(None),
    })
    .on_conflict(
        // `cause = cause`: MySQL has no `DO NOTHING`.
        OnConflict::columns([
            notifications::Column::Cause,
            notifications::Column::Recipient,
            notifications::Column::Template,
        ])
        .update_column(notifications::Column::Cause)
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    let existing = notifications::Entity::find()
        .filter(notifications::Column::Cause.eq(new.cause.as_str()))
        .filter(notifications::Column::Recipient.eq(new.recipient.as_str()))
        .filter(notifications::Column::Template.eq(new.template.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("notification {id}: not stored")))?;
    let stored = Uuid::parse_str(&existing.id)
        .map_err(|_| Error::Corrupt(format!("notification {}: id", existing.id)))?;
    Ok((stored, stored == id))
}

/// Pending notifications due at `now`, oldest due first, at most `limit`.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn due(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Notification>> {
    notifications::Entity::find()
        .filter(notifications::Column::Status.eq(Status::Pending.as_str()))
        .filter(notifications::Column::NextAttemptAt.lte(now))
        .order_by_asc(notifications::Column::NextAttemptAt)
        .order_by_asc(notifications::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Notification::try_from)
        .collect()
}

/// Claims `notification` (as [`due`] returned it) for one delivery attempt, until
/// `until`: counts the attempt and defers the notification past the attempt, so that
/// no other deliverer takes it meanwhile. `false` if another deliverer claimed it
/// first (its attempts moved on) or it is no longer pending.
///
/// # Errors
/// The database failed.
pub async fn claim(
    conn: &impl ConnectionTrait,
    notification: &Notification,
    until: DateTime<Utc>,
) -> Result<bool> {
    let seen = i32::try_from(notification.attempts)
        .map_err(|_| Error::Corrupt(format!("notification {}: attempts", notification.id)))?;
    let claimed = notifications::Entity::update_many()
        .col_expr(notifications::Column::Attempts, Expr::value(seen + 1))
        .col_expr(notifications::Column::NextAttemptAt, Expr::value(until))
        .filter(notifications::Column::Id.eq(notification.id.to_string()))
        .filter(notifications::Column::Status.eq(Status::Pending.as_str()))
        .filter(notifications::Column::Attempts.eq(seen))
        .exec(conn)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered.
    Sent,
    /// Failed: retried at `retry_at`, or (without it) given up.
    Failed {
        /// Why.
        error: String,
        /// When to try again; `None`: the notification is dead.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Records how attempt `attempt` (the notification's `attempts` after its claim)
/// ended, at `now`.
///
/// # Errors
/// The database failed.
pub async fn record_attempt(
    conn: &impl ConnectionTrait,
    id: Uuid,
    attempt: u32,
    outcome: &Attempt,
    now: DateTime<Utc>,
) -> Result<()> {
    let number = i32::try_from(attempt)
        .map_err(|_| Error::Corrupt(format!("notification {id}: attempts")))?;
    let mut update = notifications::Entity::update_many()
        .filter(notifications::Column::Id.eq(id.to_string()))
        .filter(notifications::Column::Attempts.eq(number));
    let (label, error) = match outcome {
        Attempt::Sent => {
            update = update
                .col_expr(
                    notifications::Column::Status,
                    Expr::value(Status::Sent.as_str()),
                )
                .col_expr(notifications::Column::SentAt, Expr::value(Some(now)))
                .col_expr(
                    notifications::Column::LastError,
                    Expr::value(Option::<String>::None),
                );
            ("sent", None)
        }
        Attempt::Failed { error, retry_at } => {
            update = update.col_expr(notifications::Column::LastError, Expr::value(error.clone()));
            update = match retry_at {
                Some(at) => update.col_expr(notifications::Column::NextAttemptAt, Expr::value(*at)),
                None => update.col_expr(
                    notifications::Column::Status,
                    Expr::value(Status::Dead.as_str()),
                ),
            };
            ("failed", Some(error.clone()))
        }
    };
    update.exec(conn).await?;
    delivery_attempts::Entity::insert(delivery_attempts::ActiveModel {
        notification_id: Set(id.to_string()),
        attempt: Set(number),
        at: Set(now),
        outcome: Set(label.to_owned()),
        error: Set(error),
    })
    .on_conflict(
        OnConflict::columns([
            delivery_attempts::Column::NotificationId,
            delivery_attempts::Column::Attempt,
        ])
        .update_columns([
            delivery_attempts::Column::Outcome,
            delivery_attempts::Column::Error,
        ])
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Notification `id`, if there is one.
///
/// # Errors
/// The database failed, or the row is corrupt.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Notification>> {
    notifications::Entity::find_by_id(id.to_string())
        .one(conn)
        .await?
        .map(Notification::try_from)
        .transpose()
}

/// Every notification to `recipient`, oldest first, at most `limit`.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn for_recipient(
    conn: &impl ConnectionTrait,
    recipient: &str,
    limit: u64,
) -> Result<Vec<Notification>> {
    notifications::Entity::find()
        .filter(notifications::Column::Recipient.eq(recipient))
        .order_by_asc(notifications::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Notification::try_from)
        .collect()
}

/// Up to `limit` notifications in `status`, newest first, older than `before` if
/// given: what an operator looks through (dead ones, say).
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn with_status(
    conn: &impl ConnectionTrait,
    status: Status,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Notification>> {
    let mut query =
        notifications::Entity::find().filter(notifications::Column::Status.eq(status.as_str()));
    if let Some(before) = before {
        // Ids are hyphenated UUIDv7s: as text they sort as they were made.
        query = query.filter(notifications::Column::Id.lt(before.to_string()));
    }
    query
        .order_by_desc(notifications::Column::Id)
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()))
        .all(conn)
        .await?
        .into_iter()
        .map(Notification::try_from)
        .collect()
}

/// A delivery attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// `sent` or `failed`.
    pub outcome: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// The attempts to deliver notification `id`, in order.
///
/// # Errors
/// The database failed.
pub async fn attempts_of(conn: &impl ConnectionTrait, id: Uuid) -> Result<Vec<AttemptRecord>> {
    Ok(delivery_attempts::Entity::find()
        .filter(delivery_attempts::Column::NotificationId.eq(id.to_string()))
        .order_by_asc(delivery_attempts::Column::Attempt)
        .all(conn)
        .await?
        .into_iter()
        .map(|row| AttemptRecord {
            attempt: u32::try_from(row.attempt).unwrap_or(0),
            at: row.at,
            outcome: row.outcome,
            error: row.error,
        })
        .collect())
}
