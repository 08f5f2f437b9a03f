//! Notifications (one per event, recipient and template) and their delivery attempts.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    Cause,
    Recipient,
    Channel,
    Template,
    Data,
    Status,
    Attempts,
    LastError,
    NextAttemptAt,
    CreatedAt,
    SentAt,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    NotificationId,
    Attempt,
    At,
    Outcome,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too (the default is PostgreSQL only), so a crash
    /// mid-migration leaves nothing half-created. MySQL commits DDL implicitly.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sent_at = instant(manager, Notifications::SentAt);
        sent_at.null();
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(exact_string(manager, Notifications::Id, 36).primary_key())
                    .col(exact_string(manager, Notifications::Cause, 255))
                    .col(exact_string(manager, Notifications::Recipient, 254))
                    .col(exact_string(manager, Notifications::Channel, 16))
                    .col(exact_string(manager, Notifications::Template, 64))
                    .col(ColumnDef::new(Notifications::Data).text().not_null())
                    .col(exact_string(manager, Notifications::Status, 16))
                    .col(ColumnDef::new(Notifications::Attempts).integer().not_null())
                    .col(ColumnDef::new(Notifications::LastError).text().null())
                    .col(instant(manager, Notifications::NextAttemptAt))
                    .col(instant(manager, Notifications::CreatedAt))
                    .col(sent_at)
                    .to_owned(),
            )
            .await?;
        // A redelivered event notifies each recipient once per template.
        manager
            .create_index(
                Index::create()
                    .name("notifications_once")
                    .table(Notifications::Table)
                    .col(Notifications::Cause)
                    .col(Notifications::Recipient)
                    .col(Notifications::Template)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notifications_due")
                    .table(Notifications::Table)
                    .col(Notifications::Status)
                    .col(Notifications::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .col(exact_string(manager, DeliveryAttempts::NotificationId, 36))
                    .col(ColumnDef::new(DeliveryAttempts::Attempt).integer().not_null())
                    .col(instant(manager, DeliveryAttempts::At))
                    .col(exact_string(manager, DeliveryAttempts::Outcome, 16))
                    .col(ColumnDef::new(DeliveryAttempts::Error).text().null())
                    .primary_key(
                        Index::create()
                            .col(DeliveryAttempts::NotificationId)
                            .col(DeliveryAttempts::Attempt),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeliveryAttempts::Table.into_iden(),
            Notifications::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
