//! The `outbox` schema that the fabric lays out on every database: `messages` (one
//! row per emitted event and subscriber), `heads` (per subscriber and key with
//! anything pending, the message to deliver next) and `inbox` (the deliveries whose
//! effect has committed). Its migrations live here, beside the code that uses the
//! tables.

use sea_orm_migration::prelude::*;

use crate::boundary::Boundary;

/// The schema (PostgreSQL), database (MySQL) or attached file (SQLite) that holds the
/// outbox on every database of the fabric. No registered boundary may take this name.
pub const OUTBOX_SCHEMA: &str = "outbox";

/// The outbox of one database, laid out and migrated like a boundary.
pub(crate) fn boundary() -> Boundary {
    Boundary::new::<Migrator>(OUTBOX_SCHEMA)
}

#[derive(Debug)]
struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(MessagesAndInbox), Box::new(HeadsPerKey)]
    }
}

/// A message waiting for delivery (or in flight).
pub(crate) const PENDING: &str = "pending";
/// A delivered message.
pub(crate) const DONE: &str = "done";
/// A message that failed every attempt, until replayed.
pub(crate) const DEAD: &str = "dead";

/// `messages` and its columns. Times are milliseconds since the Unix epoch.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Messages {
    #[sea_orm(iden = "messages")]
    Table,
    /// The message's id, a UUIDv7: messages of one subscriber and key are delivered
    /// in id order.
    Id,
    /// The event's id, shared by the messages of its subscribers.
    EventId,
    EventType,
    Subscriber,
    OrderingKey,
    /// The boundary that emitted the event.
    Source,
    Payload,
    TraceParent,
    OccurredAtMs,
    /// `pending`, `done` or `dead`.
    Status,
    /// Failed deliveries so far.
    Attempts,
    /// Not claimable before this time: a retry's backoff, or a claim's lease.
    AvailableAtMs,
    /// The instance whose claim holds the message, while one does.
    ClaimedBy,
    LastError,
    /// When the message was delivered or declared dead.
    FinishedAtMs,
}

/// `heads` and its columns: one row per subscriber and ordering key that has a
/// pending message, naming the one to deliver next. Claims read this table (by its
/// `available_at_ms` index) rather than scanning the pending messages; the row is
/// written with the key's first pending message and advanced, or deleted, in the
/// transaction that ends its message's delivery.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Heads {
    #[sea_orm(iden = "heads")]
    Table,
    Subscriber,
    OrderingKey,
    /// The message to deliver next: the earliest pending one, or the one in flight.
    MessageId,
    /// Not claimable before this time: the message's retry delay, or its claim's lease.
    AvailableAtMs,
}

/// Gives every subscriber and key with pending messages in `messages` a row in
/// `heads` if it has none: the earliest pending message, not claimable before the
/// latest time any of them is (so a message in flight stays held until its lease
/// ends). With `lock`, the heads already there are locked (updated to themselves)
/// until the transaction ends, so that a delivery ending meanwhile, which advances or
/// deletes its key's head, waits for the messages this transaction makes pending and
/// then sees them.
pub(crate) fn restore_heads(
    messages: sea_query::TableRef,
    heads: sea_query::TableRef,
    lock: bool,
) -> InsertStatement {
    let pending = Query::select()
        .columns([Messages::Subscriber, Messages::OrderingKey])
        .expr(Expr::col(Messages::Id).min())
        .expr(Expr::col(Messages::AvailableAtMs).max())
        .from(messages)
        .and_where(Expr::col(Messages::Status).eq(PENDING))
        .group_by_columns([Messages::Subscriber, Messages::OrderingKey])
        .to_owned();
    Query::insert()
        .into_table(heads)
        .columns(HEAD_COLUMNS)
        .select_from(pending)
        .expect("four columns, four values")
        .on_conflict(keep_existing_head(lock))
        .to_owned()
}

/// The columns a head is inserted with.
pub(crate) const HEAD_COLUMNS: [Heads; 4] = [
    Heads::Subscriber,
    Heads::OrderingKey,
    Heads::MessageId,
    Heads::AvailableAtMs,
];

/// On inserting a head whose key has one: keep the existing head; with `lock`, by
/// updating it to itself, which holds its row lock until the transaction ends.
pub(crate) fn keep_existing_head(lock: bool) -> OnConflict {
    let mut key = OnConflict::columns([Heads::Subscriber, Heads::OrderingKey]);
    if lock {
        key.value(
            Heads::MessageId,
            Expr::col((Heads::Table, Heads::MessageId)),
        );
    } else {
        key.do_nothing_on([Heads::Subscriber]);
    }
    key
}

/// `inbox` and its columns.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Inbox {
    #[sea_orm(iden = "inbox")]
    Table,
    Subscriber,
    EventId,
    HandledAtMs,
}

struct MessagesAndInbox;

impl MigrationName for MessagesAndInbox {
    fn name(&self) -> &'static str {
        "m20261122_000001_messages_and_inbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for MessagesAndInbox {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(
                        ColumnDef::new(Messages::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Messages::EventId).string_len(36).not_null())
                    .col(
                        ColumnDef::new(Messages::EventType)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Messages::Subscriber)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Messages::OrderingKey)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::Source).string_len(64).not_null())
                    .col(ColumnDef::new(Messages::Payload).text().not_null())
                    .col(ColumnDef::new(Messages::TraceParent).string_len(64))
                    .col(
                        ColumnDef::new(Messages::OccurredAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::Status).string_len(8).not_null())
                    .col(ColumnDef::new(Messages::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(Messages::AvailableAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::ClaimedBy).string_len(64))
                    .col(ColumnDef::new(Messages::LastError).text())
                    .col(ColumnDef::new(Messages::FinishedAtMs).big_integer())
                    .to_owned(),
            )
            .await?;
        // Claiming: pending messages that are due.
        manager
            .create_index(
                Index::create()
                    .name("messages_due")
                    .table(Messages::Table)
                    .col(Messages::Status)
                    .col(Messages::AvailableAtMs)
                    .to_owned(),
            )
            .await?;
        // Per-key order: is an earlier message of this subscriber and key pending?
        manager
            .create_index(
                Index::create()
                    .name("messages_key_order")
                    .table(Messages::Table)
                    .col(Messages::Subscriber)
                    .col(Messages::OrderingKey)
                    .col(Messages::Status)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Inbox::Table)
                    .col(ColumnDef::new(Inbox::Subscriber).string_len(128).not_null())
                    .col(ColumnDef::new(Inbox::EventId).string_len(36).not_null())
                    .col(ColumnDef::new(Inbox::HandledAtMs).big_integer().not_null())
                    .primary_key(Index::create().col(Inbox::Subscriber).col(Inbox::EventId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("inbox_handled_at")
                    .table(Inbox::Table)
                    .col(Inbox::HandledAtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Inbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await
    }
}

struct HeadsPerKey;

impl MigrationName for HeadsPerKey {
    fn name(&self) -> &'static str {
        "m20261202_000001_heads_per_key"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for HeadsPerKey {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Heads::Table)
                    .col(ColumnDef::new(Heads::Subscriber).string_len(128).not_null())
                    .col(
                        ColumnDef::new(Heads::OrderingKey)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Heads::MessageId).string_len(36).not_null())
                    .col(
                        ColumnDef::new(Heads::AvailableAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(Heads::Subscriber)
                            .col(Heads::OrderingKey),
                    )
                    .to_owned(),
            )
            .await?;
        // Claiming: the heads that are due, earliest first.
        manager
            .create_index(
                Index::create()
                    .name("heads_due")
                    .table(Heads::Table)
                    .col(Heads::AvailableAtMs)
                    .to_owned(),
            )
            .await?;
        // Messages already pending when this migration runs get their heads.
        let db = manager.get_connection();
        let restore = restore_heads(Messages::Table.into(), Heads::Table.into(), false);
        db.execute_raw(db.get_database_backend().build(&restore))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Heads::Table).to_owned())
            .await
    }
}
