//! Products, stock levels and reservations.

use sea_orm_migration::prelude::*;

use crate::columns::instant;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Products {
    Table,
    Sku,
    Name,
    PriceMinor,
    Currency,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StockLevels {
    Table,
    Sku,
    Available,
    Reserved,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    Id,
    Sku,
    Quantity,
    Status,
    Reference,
    ExpiresAt,
    CreatedAt,
    UpdatedAt,
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
                    .table(Products::Table)
                    .col(
                        ColumnDef::new(Products::Sku)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Products::Name).string_len(200).not_null())
                    .col(
                        ColumnDef::new(Products::PriceMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Products::Currency).string_len(3).not_null())
                    .col(instant(manager, Products::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StockLevels::Table)
                    .col(
                        ColumnDef::new(StockLevels::Sku)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StockLevels::Available)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StockLevels::Reserved)
                            .big_integer()
                            .not_null(),
                    )
                    .col(instant(manager, StockLevels::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(StockLevels::Table, StockLevels::Sku)
                            .to(Products::Table, Products::Sku),
                    )
                    .check(Expr::col(StockLevels::Available).gte(0))
                    .check(Expr::col(StockLevels::Reserved).gte(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .col(
                        ColumnDef::new(Reservations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Reservations::Sku).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Reservations::Quantity)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reservations::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reservations::Reference)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(instant(manager, Reservations::ExpiresAt))
                    .col(instant(manager, Reservations::CreatedAt))
                    .col(instant(manager, Reservations::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Reservations::Table, Reservations::Sku)
                            .to(Products::Table, Products::Sku),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("reservations_reference")
                    .table(Reservations::Table)
                    .col(Reservations::Reference)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("reservations_status_expires_at")
                    .table(Reservations::Table)
                    .col(Reservations::Status)
                    .col(Reservations::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Reservations::Table.into_iden(),
            StockLevels::Table.into_iden(),
            Products::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
