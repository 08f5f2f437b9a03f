//! The append-only audit log.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Entries {
    Table,
    Id,
    Actor,
    Action,
    Subject,
    OccurredAt,
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too (the default is PostgreSQL only), so a crash
    /// mid-migration leaves nothing half-created. MySQL commits DDL implicitly.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Entries::Table)
                    .col(
                        ColumnDef::new(Entries::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Entries::Actor).string_len(128).not_null())
                    .col(ColumnDef::new(Entries::Action).string_len(128).not_null())
                    .col(exact_string(manager, Entries::Subject, 255))
                    .col(instant(manager, Entries::OccurredAt))
                    // JSON as text: the same type and behaviour on every backend.
                    .col(ColumnDef::new(Entries::Data).text().not_null())
                    .to_owned(),
            )
            .await?;
        // Serves `entries_for`: one subject's entries in id order.
        manager
            .create_index(
                Index::create()
                    .name("entries_subject_id")
                    .table(Entries::Table)
                    .col(Entries::Subject)
                    .col(Entries::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Entries::Table).to_owned())
            .await
    }
}
