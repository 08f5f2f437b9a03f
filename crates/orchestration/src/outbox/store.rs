//! The outbox's SQL: writing messages at commit, the inbox record, claiming due
//! messages, and recording how a delivery ended. Built with sea-query, so one
//! statement serves every engine; times are milliseconds since the Unix epoch.
//!
//! Per-key order lives in `heads`: a subscriber and key with anything pending has
//! one row naming the message to deliver next, and a claim takes due heads by index
//! instead of scanning the pending messages. Who writes a head, and how they meet:
//! - an emitter inserts its key's head with the key's first message, or, when the
//!   key has one, updates it to itself: either way it holds the head's row lock
//!   until it commits;
//! - the end of a delivery (done, or dead) deletes its key's head, which takes the
//!   head's lock, before it inserts the key's next pending message as the new head.
//!   An emitter that got the lock first has committed by then and its message is
//!   seen (each PostgreSQL statement reads what committed before it began; MySQL's
//!   `INSERT … SELECT` reads with locks); one that comes after waits, and finds the
//!   new head, or none and inserts its own.
//! - a claim locks the heads it takes (skipping locked ones) and holds them by their
//!   `available_at_ms`, as a retry does.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Cond, Expr, ExprTrait, LockBehavior, LockType, Order, Query, SelectStatement, TableRef,
};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, QueryResult};
use uuid::Uuid;

use super::{Envelope, TraceContext};
use crate::clock::{epoch_millis, from_epoch_millis};
pub(crate) use crate::schema::outbox::{DEAD, DONE, PENDING};
use crate::schema::outbox::{
    HEAD_COLUMNS, Heads, Inbox, Messages, OUTBOX_SCHEMA, keep_existing_head,
};
use crate::sql::{execute, insert_if_absent};

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

fn heads() -> TableRef {
    (Alias::new(OUTBOX_SCHEMA), Heads::Table).into()
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
    // The first message of each subscriber and key heads it if nothing else does. In
    // key order, so that two emitters of the same keys lock their heads in one order.
    let mut firsts: BTreeMap<(&str, &str), (String, i64)> = BTreeMap::new();
    let ids: Vec<String> = batch.iter().map(|_| Uuid::now_v7().to_string()).collect();
    for (message, id) in batch.iter().zip(&ids) {
        firsts
            .entry((message.subscriber, message.ordering_key.as_str()))
            .or_insert_with(|| (id.clone(), epoch_millis(message.occurred_at)));
    }
    for (chunk, ids) in batch.chunks(INSERT_CHUNK).zip(ids.chunks(INSERT_CHUNK)) {
        let mut insert = Query::insert();
        insert
            .into_table(messages())
            .columns(ENVELOPE.into_iter().chain([
                Messages::Status,
                Messages::Attempts,
                Messages::AvailableAtMs,
            ]));
        for (message, id) in chunk.iter().zip(ids) {
            let at = epoch_millis(message.occurred_at);
            insert.values_panic([
                id.as_str().into(),
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
    let firsts: Vec<_> = firsts.into_iter().collect();
    for chunk in firsts.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert
            .into_table(heads())
            .columns(HEAD_COLUMNS)
            // A key that has a head keeps it, locked until this transaction ends.
            .on_conflict(keep_existing_head(true));
        for ((subscriber, key), (id, at)) in chunk {
            insert.values_panic([
                (*subscriber).into(),
                (*key).into(),
                id.as_str().into(),
                (*at).into(),
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

impl Claimed {
    /// The message, as the end of its delivery names it.
    pub(crate) fn key(&self) -> MessageKey<'_> {
        MessageKey {
            id: &self.id,
            subscriber: &self.subscriber,
            ordering_key: &self.envelope.ordering_key,
        }
    }
}

/// A message by its id, and the subscriber and key whose head it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageKey<'a> {
    pub(crate) id: &'a str,
    pub(crate) subscriber: &'a str,
    pub(crate) ordering_key: &'a str,
}

/// Claims up to `limit` due messages of `subscribers` for `holder` until
/// `now + lease`: the heads of their keys, earliest due first, so a batch can run in
/// parallel and keys stay in order. Concurrent claimers skip each other's locked
/// heads (PostgreSQL, MySQL); on SQLite the immediate transaction makes the claim a
/// single claimer.
pub(crate) async fn claim(
    db: &DatabaseConnection,
    holder: &str,
    subscribers: &[&str],
    now: DateTime<Utc>,
    lease: Duration,
    limit: u64,
) -> Result<Vec<Claimed>, DbErr> {
    let tx = crate::sql::begin_write(db).await?;
    let backend = tx.get_database_backend();
    let due = Query::select()
        .columns([Heads::Subscriber, Heads::OrderingKey, Heads::MessageId])
        .from(heads())
        .and_where(Expr::col(Heads::Subscriber).is_in(subscribers.iter().copied()))
        .and_where(Expr::col(Heads::AvailableAtMs).lte(epoch_millis(now)))
        .order_by(Heads::AvailableAtMs, Order::Asc)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let mut due: Vec<(String, String, String)> = tx
        .query_all_raw(backend.build(&due))
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("", "subscriber")?,
                row.try_get("", "ordering_key")?,
                row.try_get("", "message_id")?,
            ))
        })
        .collect::<Result<_, DbErr>>()?;
    if due.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let select = Query::select()
        .columns(ENVELOPE.into_iter().chain([Messages::Attempts]))
        .from(messages())
        .and_where(Expr::col(Messages::Id).is_in(due.iter().map(|(_, _, id)| id.as_str())))
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .to_owned();
    let claimed: Vec<Claimed> = tx
        .query_all_raw(backend.build(&select))
        .await?
        .iter()
        .map(claimed_from)
        .collect::<Result<_, _>>()?;
    // A head whose message is no longer pending (its delivery ended without moving
    // the head, as a version before heads did) moves on to the key's next message.
    due.retain(|(_, _, id)| !claimed.iter().any(|c| &c.id == id));
    for (subscriber, ordering_key, id) in &due {
        tracing::warn!(
            subscriber,
            ordering_key,
            message = id,
            "an outbox head named a message that is not pending; moving it on"
        );
        advance_head(&tx, subscriber, ordering_key).await?;
    }
    if !claimed.is_empty() {
        let until = epoch_millis(now + lease);
        let update = Query::update()
            .table(messages())
            .value(Messages::ClaimedBy, holder)
            .value(Messages::AvailableAtMs, until)
            .and_where(Expr::col(Messages::Id).is_in(claimed.iter().map(|c| c.id.as_str())))
            .to_owned();
        execute(&tx, &update).await?;
        let update = Query::update()
            .table(heads())
            .value(Heads::AvailableAtMs, until)
            // One equality pair per head, not a row-value `IN`: MariaDB plans an
            // `UPDATE … WHERE (a, b) IN (…)` as a scan of the whole key and locks every
            // head it passes, which deadlocks two claimers on each other's heads.
            .cond_where(claimed.iter().fold(Cond::any(), |any, c| {
                any.add(
                    Cond::all()
                        .add(Expr::col(Heads::Subscriber).eq(c.subscriber.as_str()))
                        .add(Expr::col(Heads::OrderingKey).eq(c.envelope.ordering_key.as_str())),
                )
            }))
            .to_owned();
        execute(&tx, &update).await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Points the head of `subscriber` and `ordering_key` at the key's earliest pending
/// message, or leaves it deleted when none is left; in the caller's transaction. The
/// delete comes first and takes the head's lock (waiting for an emitter that holds
/// it to commit); the insert's read then sees that emitter's message (each
/// statement reads what committed before it began: READ COMMITTED, on MySQL too,
/// see [`crate::sql::begin_write`]).
async fn advance_head(
    tx: &impl ConnectionTrait,
    subscriber: &str,
    ordering_key: &str,
) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table(heads())
        .and_where(Expr::col(Heads::Subscriber).eq(subscriber))
        .and_where(Expr::col(Heads::OrderingKey).eq(ordering_key))
        .to_owned();
    execute(tx, &delete).await?;
    let next = Query::select()
        .columns([
            Messages::Subscriber,
            Messages::OrderingKey,
            Messages::Id,
            Messages::AvailableAtMs,
        ])
        .from(messages())
        .and_where(Expr::col(Messages::Subscriber).eq(subscriber))
        .and_where(Expr::col(Messages::OrderingKey).eq(ordering_key))
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .order_by(Messages::Id, Order::Asc)
        .limit(1)
        .to_owned();
    let insert = Query::insert()
        .into_table(heads())
        .columns(HEAD_COLUMNS)
        .select_from(next)
        .expect("four columns, four values")
        .to_owned();
    execute(tx, &insert).await?;
    Ok(())
}

/// Gives every key with pending messages that has no head one (see
/// [`crate::schema::outbox::restore_heads`]); with `lock`, also locks the heads
/// there are until the caller's transaction ends. Returns how many it wrote.
pub(crate) async fn restore_heads(db: &impl ConnectionTrait, lock: bool) -> Result<u64, DbErr> {
    execute(
        db,
        &crate::schema::outbox::restore_heads(messages(), heads(), lock),
    )
    .await
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

/// Marks `message` delivered and moves its key's head on, if `holder` still holds
/// it; in the caller's transaction. Returns whether it did.
pub(crate) async fn complete(
    tx: &impl ConnectionTrait,
    holder: &str,
    message: MessageKey<'_>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let update = Query::update()
        .table(messages())
        .value(Messages::Status, DONE)
        .value(Messages::ClaimedBy, Option::<String>::None)
        .value(Messages::FinishedAtMs, epoch_millis(now))
        .and_where(Expr::col(Messages::Id).eq(message.id))
        .and_where(Expr::col(Messages::ClaimedBy).eq(holder))
        .to_owned();
    if execute(tx, &update).await? == 0 {
        return Ok(false);
    }
    advance_head(tx, message.subscriber, message.ordering_key).await?;
    Ok(true)
}

/// How a failed delivery continues.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AfterFailure {
    /// Retry no earlier than this.
    RetryAt(DateTime<Utc>),
    /// Give up: the message is dead until replayed, and its key moves on.
    Dead,
}

/// Records a failed delivery of `message`, if `holder` still holds it; in the
/// caller's transaction. Returns whether it did.
pub(crate) async fn fail(
    tx: &impl ConnectionTrait,
    holder: &str,
    message: MessageKey<'_>,
    attempts: u32,
    error: &str,
    next: AfterFailure,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = Query::update();
    update
        .table(messages())
        .value(
            Messages::Attempts,
            i32::try_from(attempts).unwrap_or(i32::MAX),
        )
        .value(Messages::LastError, error)
        .value(Messages::ClaimedBy, Option::<String>::None)
        .and_where(Expr::col(Messages::Id).eq(message.id))
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
    if execute(tx, &update).await? == 0 {
        return Ok(false);
    }
    match next {
        AfterFailure::RetryAt(at) => {
            let retry = Query::update()
                .table(heads())
                .value(Heads::AvailableAtMs, epoch_millis(at))
                .and_where(Expr::col(Heads::Subscriber).eq(message.subscriber))
                .and_where(Expr::col(Heads::OrderingKey).eq(message.ordering_key))
                .and_where(Expr::col(Heads::MessageId).eq(message.id))
                .to_owned();
            execute(tx, &retry).await?;
        }
        AfterFailure::Dead => advance_head(tx, message.subscriber, message.ordering_key).await?,
    }
    Ok(true)
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

/// The earliest time after `now` at which a head's retry delay or claim ends, if
/// any does: when something may become due without a wake-up.
pub(crate) async fn next_due_after(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select = Query::select()
        .expr_as(Expr::col(Heads::AvailableAtMs).min(), Alias::new("at"))
        .from(heads())
        .and_where(Expr::col(Heads::AvailableAtMs).gt(epoch_millis(now)))
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
