//! Payments, their refunds, verified customers, and the simulated gateway's own store.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    IdempotencyKey,
    OrderReference,
    CustomerId,
    AmountMinor,
    Currency,
    Status,
    GatewayReference,
    DeclineReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    PaymentId,
    AmountMinor,
    GatewayReference,
    CreatedAt,
}

#[derive(DeriveIden)]
enum VerifiedCustomers {
    Table,
    CustomerId,
    VerifiedAt,
}

#[derive(DeriveIden)]
enum GatewayRequests {
    Table,
    Key,
    Kind,
    ChargeKey,
    AmountMinor,
    Currency,
    Outcome,
    Reference,
    Reason,
    CreatedAt,
}

/// `exact_string`, but nullable.
fn nullable_exact_string<T: IntoIden>(manager: &SchemaManager<'_>, name: T, len: u32) -> ColumnDef {
    let mut column = exact_string(manager, name, len);
    column.null();
    column
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too (the default is PostgreSQL only), so a crash
    /// mid-migration leaves nothing half-created. MySQL commits DDL implicitly.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Keys and references are looked up, and keys are unique, byte for byte: on
        // MySQL's default collations `Key-1` would find (and collide with) `key-1`.
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(ColumnDef::new(Payments::Id).uuid().not_null().primary_key())
                    .col(exact_string(manager, Payments::IdempotencyKey, 255).unique_key())
                    .col(exact_string(manager, Payments::OrderReference, 128))
                    .col(exact_string(manager, Payments::CustomerId, 64))
                    .col(
                        ColumnDef::new(Payments::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Payments::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Payments::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Payments::GatewayReference)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(Payments::DeclineReason).text().null())
                    .col(instant(manager, Payments::CreatedAt))
                    .col(instant(manager, Payments::UpdatedAt))
                    .check(Expr::col(Payments::AmountMinor).gt(0))
                    .to_owned(),
            )
            .await?;
        // Serves `payments_for_order`.
        manager
            .create_index(
                Index::create()
                    .name("payments_order_reference")
                    .table(Payments::Table)
                    .col(Payments::OrderReference)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(ColumnDef::new(Refunds::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Refunds::PaymentId).uuid().not_null())
                    .col(
                        ColumnDef::new(Refunds::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Refunds::GatewayReference)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(instant(manager, Refunds::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Refunds::Table, Refunds::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves `refunds_for`. (On MySQL it replaces the index the foreign key made.)
        manager
            .create_index(
                Index::create()
                    .name("refunds_payment_id")
                    .table(Refunds::Table)
                    .col(Refunds::PaymentId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VerifiedCustomers::Table)
                    .col(exact_string(manager, VerifiedCustomers::CustomerId, 64).primary_key())
                    .col(instant(manager, VerifiedCustomers::VerifiedAt))
                    .to_owned(),
            )
            .await?;
        // The simulated gateway's store: one row per request key, as a keyed payment
        // API keeps them.
        manager
            .create_table(
                Table::create()
                    .table(GatewayRequests::Table)
                    .col(exact_string(manager, GatewayRequests::Key, 255).primary_key())
                    .col(
                        ColumnDef::new(GatewayRequests::Kind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(nullable_exact_string(
                        manager,
                        GatewayRequests::ChargeKey,
                        255,
                    ))
                    .col(
                        ColumnDef::new(GatewayRequests::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GatewayRequests::Currency)
                            .string_len(3)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(GatewayRequests::Outcome)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GatewayRequests::Reference)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(GatewayRequests::Reason).text().null())
                    .col(instant(manager, GatewayRequests::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // A refund finds the earlier refunds of its charge through this.
        manager
            .create_index(
                Index::create()
                    .name("gateway_requests_charge_key")
                    .table(GatewayRequests::Table)
                    .col(GatewayRequests::ChargeKey)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GatewayRequests::Table.into_iden(),
            VerifiedCustomers::Table.into_iden(),
            Refunds::Table.into_iden(),
            Payments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
