//! Email verification tokens of registrations, stored as SHA-256.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum VerificationTokens {
    Table,
    TokenHash,
    AccountId,
    ExpiresAt,
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
                    .table(VerificationTokens::Table)
                    .col(exact_string(manager, VerificationTokens::TokenHash, 64).primary_key())
                    .col(exact_string(manager, VerificationTokens::AccountId, 36))
                    .col(instant(manager, VerificationTokens::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("verification_tokens_account")
                    .table(VerificationTokens::Table)
                    .col(VerificationTokens::AccountId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(VerificationTokens::Table).to_owned())
            .await
    }
}
