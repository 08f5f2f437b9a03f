//! What operators ask of the outbox: how much is pending, in flight and dead on each
//! database, and replaying dead messages once their cause is mended.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::store::{self, DEAD, PENDING};
use crate::schema::outbox::Messages;
use crate::topology::DatabaseId;

/// The outbox of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStatus {
    /// The database.
    pub database: DatabaseId,
    /// Messages waiting for delivery, including those in flight and those waiting
    /// for a retry.
    pub pending: u64,
    /// Pending messages claimed by a dispatcher (a claim whose lease ran out counts
    /// until another dispatcher takes the message over).
    pub in_flight: u64,
    /// Messages that failed every attempt, until replayed.
    pub dead: u64,
    /// How long the oldest pending message has waited.
    pub oldest_pending_age: Option<Duration>,
    /// The same, per subscriber with anything pending or dead.
    pub subscribers: Vec<SubscriberStatus>,
}

/// One subscriber's messages on one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStatus {
    /// The subscriber.
    pub subscriber: String,
    /// Pending messages.
    pub pending: u64,
    /// In-flight messages.
    pub in_flight: u64,
    /// Dead messages.
    pub dead: u64,
    /// The last error of the most recent dead message.
    pub last_error: Option<String>,
}

/// Which dead messages to replay. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only messages for this subscriber.
    pub subscriber: Option<String>,
    /// Only events emitted at least this long ago.
    pub older_than: Option<Duration>,
}

/// Reads the status of one database's outbox.
pub(crate) async fn status(
    db: &impl ConnectionTrait,
    database: &DatabaseId,
    now: DateTime<Utc>,
) -> Result<OutboxStatus, DbErr> {
    // COUNT is a 64-bit integer on every engine (SUM is not).
    let select = Query::select()
        .columns([Messages::Subscriber, Messages::Status, Messages::ClaimedBy])
        .expr_as(Expr::col(Messages::Id).count(), Alias::new("messages"))
        .expr_as(
            Expr::col(Messages::OccurredAtMs).min(),
            Alias::new("oldest_ms"),
        )
        .from(store::messages())
        .and_where(Expr::col(Messages::Status).is_in([PENDING, DEAD]))
        .group_by_columns([Messages::Subscriber, Messages::Status, Messages::ClaimedBy])
        .order_by(Messages::Subscriber, Order::Asc)
        .to_owned();
    let rows = db
        .query_all_raw(db.get_database_backend().build(&select))
        .await?;
    let mut status = OutboxStatus {
        database: database.clone(),
        pending: 0,
        in_flight: 0,
        dead: 0,
        oldest_pending_age: None,
        subscribers: Vec::new(),
    };
    let mut oldest: Option<i64> = None;
    for row in rows {
        let subscriber: String = row.try_get("", "subscriber")?;
        let state: String = row.try_get("", "status")?;
        let claimed = row.try_get::<Option<String>>("", "claimed_by")?.is_some();
        let count = u64::try_from(row.try_get::<i64>("", "messages")?).unwrap_or(0);
        if status
            .subscribers
            .last()
            .is_none_or(|s| s.subscriber != subscriber)
        {
            status.subscribers.push(SubscriberStatus {
                subscriber,
                pending: 0,
                in_flight: 0,
                dead: 0,
                last_error: None,
            });
        }
        let entry = status.subscribers.last_mut().expect("just pushed");
        if state == DEAD {
            entry.dead += count;
            status.dead += count;
            continue;
        }
        entry.pending += count;
        status.pending += count;
        if claimed {
            entry.in_flight += count;
            status.in_flight += count;
        }
        let ms: i64 = row.try_get("", "oldest_ms")?;
        oldest = Some(oldest.map_or(ms, |o| Ord::min(o, ms)));
    }
    status.oldest_pending_age = oldest.map(|ms| {
        (now - DateTime::from_timestamp_millis(ms).unwrap_or(now))
            .to_std()
            .unwrap_or_default()
    });
    for entry in status.subscribers.iter_mut().filter(|s| s.dead > 0) {
        entry.last_error = last_dead_error(db, &entry.subscriber).await?;
    }
    Ok(status)
}

async fn last_dead_error(
    db: &impl ConnectionTrait,
    subscriber: &str,
) -> Result<Option<String>, DbErr> {
    let select = Query::select()
        .column(Messages::LastError)
        .from(store::messages())
        .and_where(Expr::col(Messages::Subscriber).eq(subscriber))
        .and_where(Expr::col(Messages::Status).eq(DEAD))
        .order_by(Messages::FinishedAtMs, Order::Desc)
        .limit(1)
        .to_owned();
    let row = db
        .query_one_raw(db.get_database_backend().build(&select))
        .await?;
    row.map(|row| row.try_get::<Option<String>>("", "last_error"))
        .transpose()
        .map(Option::flatten)
}

/// Makes the dead messages matching `filter` pending again, due now, with their
/// attempts reset, and gives their keys heads where they have none; returns how many.
pub(crate) async fn replay(
    db: &DatabaseConnection,
    filter: &ReplayFilter,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut update = Query::update();
    update
        .table(store::messages())
        .value(Messages::Status, PENDING)
        .value(Messages::Attempts, 0i32)
        .value(Messages::AvailableAtMs, crate::clock::epoch_millis(now))
        .value(Messages::ClaimedBy, Option::<String>::None)
        .value(Messages::FinishedAtMs, Option::<i64>::None)
        .and_where(Expr::col(Messages::Status).eq(DEAD));
    if let Some(event_type) = &filter.event_type {
        update.and_where(Expr::col(Messages::EventType).eq(event_type.as_str()));
    }
    if let Some(subscriber) = &filter.subscriber {
        update.and_where(Expr::col(Messages::Subscriber).eq(subscriber.as_str()));
    }
    if let Some(older_than) = filter.older_than {
        let before = now - older_than;
        update.and_where(Expr::col(Messages::OccurredAtMs).lte(crate::clock::epoch_millis(before)));
    }
    let tx = crate::sql::begin_write(db).await?;
    let replayed = crate::sql::execute(&tx, &update).await?;
    if replayed > 0 {
        // Locking the heads there are: a delivery of one of these keys that ends
        // meanwhile must see the replayed messages before it lets its head go.
        store::restore_heads(&tx, true).await?;
    }
    tx.commit().await?;
    Ok(replayed)
}
