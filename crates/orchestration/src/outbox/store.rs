//! The outbox's SQL: writing messages at commit, the inbox record, claiming due
//! messages, and recording how a delivery ended. Built with sea-query, so one
//! statement serves every engine; times are milliseconds since the Unix epoch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, LockBehavior, LockType, Order, Query, SelectStatement, TableRef,
};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, QueryResult};
use uuid::Uuid;

use super::{Envelope, TraceContext};
use crate::clock::{epoch_millis, from_epoch_millis};
use crate::schema::outbox::{Inbox, Messages, OUTBOX_SCHEMA};
use crate::sql::{execute, insert_if_absent};

pub(crate) const PENDING: &str = "pending";
pub(crate) const DONE: &str = "done";
pub(crate) const DEAD: &str = "dead";

/// The PostgreSQL channel on which a commit that wrote messages notifies dispatchers.
pub(crate) const CHANNEL: &str = "switchyard_outbox";

/// Rows per `INSERT`: 12 values each keeps every engine's parameter limit far away.
const INSERT_CHUNK: usize = 500;

/// The columns a message is written with and claimed by: its id, its subscriber and
/// its envelope.
const ENVELOPE: [Messages; 9] = [
    Messages::Id,
    Messages::EventId,
    Messages::EventType,
    Messages::Subscriber,
    Messages::OrderingKey,
    Messages::Source,
    Messages::Payload,
    Messages::TraceParent,
    Messages::OccurredAtMs,
];

/// A message to write at commit.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: &'static str,
    pub(crate) subscriber: &'static str,
    pub(crate) ordering_key: String,
    pub(crate) source: &'static str,
    pub(crate) payload: String,
    pub(crate) trace_parent: String,
    pub(crate) occurred_at: DateTime<Utc>,
}

pub(crate) fn messages() -> TableRef {
    (Alias::new(OUTBOX_SCHEMA), Messages::Table).into()
}

fn inbox() -> TableRef {
    (Alias::new(OUTBOX_SCHEMA), Inbox::Table).into()
}

/// Writes `batch` into the outbox in the caller's transaction and, on PostgreSQL with
/// `notify`, notifies listening dispatchers (delivered only if the transaction
/// commits). A transaction that will be prepared for two-phase commit cannot notify
/// (PostgreSQL refuses to prepare it); its caller notifies after the commit instead.
pub(crate) async fn write_messages(
    tx: &impl ConnectionTrait,
    batch: &[NewMessage],
    notify: bool,
) -> Result<(), DbErr> {
    for chunk in batch.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert
            .into_table(messages())
            .columns(ENVELOPE.into_iter().chain([
                Messages::Status,
                Messages::Attempts,
                Messages::AvailableAtMs,
            ]));
        for message in chunk {
            let at = epoch_millis(message.occurred_at);
            insert.values_panic([
                Uuid::now_v7().to_string().into(),
                message.event_id.to_string().into(),
                message.event_type.into(),
                message.subscriber.into(),
                message.ordering_key.as_str().into(),
                message.source.into(),
                message.payload.as_str().into(),
                message.trace_parent.as_str().into(),
                at.into(),
                PENDING.into(),
                0i32.into(),
                at.into(),
            ]);
        }
        execute(tx, &insert).await?;
    }
    if notify {
        self::notify(tx).await?;
    }
    Ok(())
}

/// Wakes the dispatchers listening on this PostgreSQL database; nothing elsewhere.
pub(crate) async fn notify(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{CHANNEL}', '')"))
            .await?;
    }
    Ok(())
}

/// Records that `subscriber` handled `event_id`, in the caller's transaction; `false`
/// if it already had. A concurrent delivery of the same event waits on the first one's
/// record and then finds it.
pub(crate) async fn record_in_inbox(
    tx: &impl ConnectionTrait,
    subscriber: &str,
    event_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    insert_if_absent(
        tx,
        OUTBOX_SCHEMA,
        "inbox",
        &["subscriber", "event_id", "handled_at_ms"],
        vec![
            subscriber.into(),
            event_id.to_string().into(),
            epoch_millis(now).into(),
        ],
    )
    .await
}

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) id: String,
    pub(crate) subscriber: String,
    pub(crate) envelope: Envelope,
    /// Failed deliveries before this one.
    pub(crate) attempts: u32,
}

/// Claims up to `limit` due messages of `subscribers` for `holder` until
/// `now + lease`: at most one per subscriber and key (the earliest pending one), so a
/// batch can run in parallel and keys stay in order. Concurrent claimers skip each
/// other's locked rows (PostgreSQL, MySQL); on SQLite the immediate transaction makes
/// the claim a single claimer.
pub(crate) async fn claim(
    db: &DatabaseConnection,
    holder: &str,
    subscribers: &[&str],
    now: DateTime<Utc>,
    lease: Duration,
    limit: u64,
) -> Result<Vec<Claimed>, DbErr> {
    let tx = crate::sql::begin_write(db).await?;
    let rows = tx
        .query_all_raw(
            tx.get_database_backend()
                .build(&due(subscribers, now, limit)),
        )
        .await?;
    let claimed: Vec<Claimed> = rows.iter().map(claimed_from).collect::<Result<_, _>>()?;
    if !claimed.is_empty() {
        let until = now + lease;
        let update = Query::update()
            .table(messages())
            .value(Messages::ClaimedBy, holder)
            .value(Messages::AvailableAtMs, epoch_millis(until))
            .and_where(Expr::col(Messages::Id).is_in(claimed.iter().map(|c| c.id.as_str())))
            .to_owned();
        execute(&tx, &update).await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Due messages of `subscribers` that are the earliest pending one of their
/// subscriber and key. The heads are found by one grouped scan of the pending
/// messages, which stays linear however stale the planner's statistics are (a
/// correlated `NOT EXISTS` per candidate went quadratic on PostgreSQL under a fast
/// growing backlog).
fn due(subscribers: &[&str], now: DateTime<Utc>, limit: u64) -> SelectStatement {
    let heads = Query::select()
        .expr(Expr::col(Messages::Id).min())
        .from(messages())
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .and_where(Expr::col(Messages::Subscriber).is_in(subscribers.iter().copied()))
        .group_by_columns([Messages::Subscriber, Messages::OrderingKey])
        .to_owned();
    Query::select()
        .columns(ENVELOPE.into_iter().chain([Messages::Attempts]))
        .from(messages())
        .and_where(Expr::col(Messages::Id).in_subquery(heads))
        // Checked again on the row as locked: another claimer may have changed it.
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .and_where(Expr::col(Messages::AvailableAtMs).lte(epoch_millis(now)))
        .order_by(Messages::Id, Order::Asc)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned()
}

fn claimed_from(row: &QueryResult) -> Result<Claimed, DbErr> {
    let text = |column: &str| row.try_get::<String>("", column);
    let event_id = text("event_id")?;
    let attempts: i32 = row.try_get("", "attempts")?;
    let attempts = u32::try_from(attempts).unwrap_or(0);
    Ok(Claimed {
        id: text("id")?,
        subscriber: text("subscriber")?,
        attempts,
        envelope: Envelope {
            event_id: Uuid::parse_str(&event_id)
                .map_err(|e| DbErr::Custom(format!("outbox event id `{event_id}`: {e}")))?,
            event_type: text("event_type")?,
            ordering_key: text("ordering_key")?,
            source: text("source")?,
            occurred_at: from_epoch_millis(row.try_get("", "occurred_at_ms")?),
            trace_parent: row.try_get("", "trace_parent")?,
            attempt: attempts + 1,
            payload: text("payload")?,
        },
    })
}

impl Envelope {
    /// The trace this event belongs to.
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        self.trace_parent.as_deref().and_then(TraceContext::parse)
    }
}

/// Marks message `id` delivered, if `holder` still holds it.
pub(crate) async fn complete(
    db: &impl ConnectionTrait,
    holder: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let update = Query::update()
        .table(messages())
        .value(Messages::Status, DONE)
        .value(Messages::ClaimedBy, Option::<String>::None)
        .value(Messages::FinishedAtMs, epoch_millis(now))
        .and_where(Expr::col(Messages::Id).eq(id))
        .and_where(Expr::col(Messages::ClaimedBy).eq(holder))
        .to_owned();
    execute(db, &update).await
}

/// How a failed delivery continues.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AfterFailure {
    /// Retry no earlier than this.
    RetryAt(DateTime<Utc>),
    /// Give up: the message is dead until replayed.
    Dead,
}

/// Records a failed delivery of message `id`, if `holder` still holds it.
pub(crate) async fn fail(
    db: &impl ConnectionTrait,
    holder: &str,
    id: &str,
    attempts: u32,
    error: &str,
    next: AfterFailure,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut update = Query::update();
    update
        .table(messages())
        .value(
            Messages::Attempts,
            i32::try_from(attempts).unwrap_or(i32::MAX),
        )
        .value(Messages::LastError, error)
        .value(Messages::ClaimedBy, Option::<String>::None)
        .and_where(Expr::col(Messages::Id).eq(id))
        .and_where(Expr::col(Messages::ClaimedBy).eq(holder));
    match next {
        AfterFailure::RetryAt(at) => {
            update.value(Messages::AvailableAtMs, epoch_millis(at));
        }
        AfterFailure::Dead => {
            update
                .value(Messages::Status, DEAD)
                .value(Messages::FinishedAtMs, epoch_millis(now));
        }
    }
    execute(db, &update).await
}

/// When the oldest pending message was emitted, if any is pending.
pub(crate) async fn oldest_pending(
    db: &impl ConnectionTrait,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select = Query::select()
        .expr_as(Expr::col(Messages::OccurredAtMs).min(), Alias::new("at"))
        .from(messages())
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .to_owned();
    min_time(db, &select).await
}

/// The earliest time after `now` at which a pending message's retry delay or claim
/// ends, if any does: when something may become due without a wake-up.
pub(crate) async fn next_due_after(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select = Query::select()
        .expr_as(Expr::col(Messages::AvailableAtMs).min(), Alias::new("at"))
        .from(messages())
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .and_where(Expr::col(Messages::AvailableAtMs).gt(epoch_millis(now)))
        .to_owned();
    min_time(db, &select).await
}

async fn min_time(
    db: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = db
        .query_one_raw(db.get_database_backend().build(select))
        .await?;
    let at: Option<i64> = match row {
        Some(row) => row.try_get("", "at")?,
        None => None,
    };
    Ok(at.map(from_epoch_millis))
}

/// Deletes delivered messages and inbox records older than `before`.
pub(crate) async fn prune(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
) -> Result<(u64, u64), DbErr> {
    let messages = Query::delete()
        .from_table(messages())
        .and_where(Expr::col(Messages::Status).eq(DONE))
        .and_where(Expr::col(Messages::FinishedAtMs).lt(epoch_millis(before)))
        .to_owned();
    let inbox = Query::delete()
        .from_table(inbox())
        .and_where(Expr::col(Inbox::HandledAtMs).lt(epoch_millis(before)))
        .to_owned();
    Ok((execute(db, &messages).await?, execute(db, &inbox).await?))
}

/// The newest message's id (ids are UUIDv7 text, so they sort in the order written):
/// where a test scenario starts watching.
#[cfg(feature = "testing")]
pub(crate) async fn newest_id(db: &impl ConnectionTrait) -> Result<Option<String>, DbErr> {
    let query = Query::select()
        .expr_as(Expr::col(Messages::Id).max(), Alias::new("newest"))
        .from(messages())
        .to_owned();
    match db
        .query_one_raw(db.get_database_backend().build(&query))
        .await?
    {
        Some(row) => row.try_get("", "newest"),
        None => Ok(None),
    }
}

/// Every message written after message `after` (all if `None`), in the order written,
/// with its status: what a test scenario watches.
#[cfg(feature = "testing")]
pub(crate) async fn messages_after(
    db: &impl ConnectionTrait,
    after: Option<&str>,
) -> Result<Vec<(Envelope, String)>, DbErr> {
    let mut query = Query::select()
        .columns(
            ENVELOPE
                .into_iter()
                .chain([Messages::Attempts, Messages::Status]),
        )
        .from(messages())
        .order_by(Messages::Id, Order::Asc)
        .to_owned();
    if let Some(after) = after {
        query.and_where(Expr::col(Messages::Id).gt(after));
    }
    let rows = db
        .query_all_raw(db.get_database_backend().build(&query))
        .await?;
    rows.iter()
        .map(|row| Ok((claimed_from(row)?.envelope, row.try_get("", "status")?)))
        .collect()
}
