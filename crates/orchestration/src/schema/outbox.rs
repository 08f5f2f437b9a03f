//! The `outbox` schema that the fabric lays out on every database: `messages` (one
//! row per emitted event and subscriber) and `inbox` (the deliveries whose effect has
//! committed). Its migrations live here, beside the code that uses the tables.

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
        vec![Box::new(MessagesAndInbox)]
    }
}

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
