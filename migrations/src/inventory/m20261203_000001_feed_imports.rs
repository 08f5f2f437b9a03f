//! Feed imports: each version of a product feed imported (its cursor and counts) and
//! the rows it rejected, committed with each chunk.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum FeedImports {
    Table,
    Feed,
    Source,
    Position,
    Inserted,
    Updated,
    Unchanged,
    Rejected,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum FeedRejects {
    Table,
    Feed,
    Line,
    Sku,
    Reason,
}

fn count<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut finished_at = instant(manager, FeedImports::FinishedAt);
        finished_at.null();
        manager
            .create_table(
                Table::create()
                    .table(FeedImports::Table)
                    .col(exact_string(manager, FeedImports::Feed, 64).primary_key())
                    .col(ColumnDef::new(FeedImports::Source).text().not_null())
                    .col(count(FeedImports::Position))
                    .col(count(FeedImports::Inserted))
                    .col(count(FeedImports::Updated))
                    .col(count(FeedImports::Unchanged))
                    .col(count(FeedImports::Rejected))
                    .col(instant(manager, FeedImports::StartedAt))
                    .col(instant(manager, FeedImports::UpdatedAt))
                    .col(finished_at)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FeedRejects::Table)
                    .col(exact_string(manager, FeedRejects::Feed, 64))
                    .col(ColumnDef::new(FeedRejects::Line).big_integer().not_null())
                    .col(ColumnDef::new(FeedRejects::Sku).string_len(255).null())
                    .col(ColumnDef::new(FeedRejects::Reason).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(FeedRejects::Feed)
                            .col(FeedRejects::Line),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [FeedRejects::Table.into_iden(), FeedImports::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
