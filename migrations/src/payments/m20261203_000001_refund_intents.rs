//! Refund intents: a refund asked for, the gateway's answer, and when the refund was
//! applied to its order.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RefundIntents {
    Table,
    Id,
    PaymentId,
    GatewayKey,
    AmountMinor,
    Status,
    Error,
    GatewayReference,
    AppliedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefundIntents::Table)
                    .col(
                        ColumnDef::new(RefundIntents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RefundIntents::PaymentId).uuid().not_null())
                    .col(exact_string(manager, RefundIntents::GatewayKey, 255))
                    .col(
                        ColumnDef::new(RefundIntents::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefundIntents::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RefundIntents::Error).text().null())
                    .col(
                        ColumnDef::new(RefundIntents::GatewayReference)
                            .string_len(255)
                            .null(),
                    )
                    .col(instant(manager, RefundIntents::AppliedAt).null())
                    .col(instant(manager, RefundIntents::CreatedAt))
                    .col(instant(manager, RefundIntents::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefundIntents::Table, RefundIntents::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // A payment's intents are read under its lock when a refund is asked for.
        manager
            .create_index(
                Index::create()
                    .name("refund_intents_payment_id")
                    .table(RefundIntents::Table)
                    .col(RefundIntents::PaymentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefundIntents::Table).to_owned())
            .await
    }
}
