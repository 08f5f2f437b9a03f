//! What a feed's server said about the version it sent (`ETag`, `Last-Modified`), so
//! that the next fetch asks only for a newer one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum FeedImports {
    Table,
    Etag,
    LastModified,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [FeedImports::Etag, FeedImports::LastModified] {
            manager
                .alter_table(
                    Table::alter()
                        .table(FeedImports::Table)
                        .add_column(ColumnDef::new(column).string_len(255).null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [FeedImports::Etag, FeedImports::LastModified] {
            manager
                .alter_table(
                    Table::alter()
                        .table(FeedImports::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
