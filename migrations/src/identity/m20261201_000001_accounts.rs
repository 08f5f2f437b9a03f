//! Accounts, their password credentials, TOTP secrets and recovery codes, sessions,
//! roles and who holds them.

use sea_orm_migration::prelude::*;

use crate::columns::{exact_string, instant};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Email,
    DisplayName,
    Kind,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    AccountId,
    PasswordHash,
    ChangedAt,
}

#[derive(DeriveIden)]
enum TotpSecrets {
    Table,
    AccountId,
    SecretBase32,
    Confirmed,
    LastUsedStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    CodeHash,
    AccountId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    AccountId,
    TokenHash,
    UserAgent,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginChallenges {
    Table,
    TokenHash,
    AccountId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    Key,
    Failures,
    WindowStartedAt,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Abilities,
}

#[derive(DeriveIden)]
enum AccountRoles {
    Table,
    AccountId,
    Role,
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
                    .table(Accounts::Table)
                    .col(exact_string(manager, Accounts::Id, 36).primary_key())
                    // Normalised (lowercase) before it is stored; unique.
                    .col(exact_string(manager, Accounts::Email, 254).unique_key())
                    .col(ColumnDef::new(Accounts::DisplayName).string_len(200).not_null())
                    .col(ColumnDef::new(Accounts::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Accounts::Status).string_len(16).not_null())
                    .col(instant(manager, Accounts::CreatedAt))
                    .col(instant(manager, Accounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .col(exact_string(manager, Credentials::AccountId, 36).primary_key())
                    .col(ColumnDef::new(Credentials::PasswordHash).text().not_null())
                    .col(instant(manager, Credentials::ChangedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TotpSecrets::Table)
                    .col(exact_string(manager, TotpSecrets::AccountId, 36).primary_key())
                    .col(ColumnDef::new(TotpSecrets::SecretBase32).string_len(64).not_null())
                    .col(ColumnDef::new(TotpSecrets::Confirmed).boolean().not_null())
                    .col(ColumnDef::new(TotpSecrets::LastUsedStep).big_integer().not_null())
                    .col(instant(manager, TotpSecrets::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    // SHA-256 of the code, hex.
                    .col(exact_string(manager, RecoveryCodes::CodeHash, 64).primary_key())
                    .col(exact_string(manager, RecoveryCodes::AccountId, 36))
                    .col(instant(manager, RecoveryCodes::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(exact_string(manager, Sessions::Id, 36).primary_key())
                    .col(exact_string(manager, Sessions::AccountId, 36))
                    // SHA-256 of the token, hex; the token itself is never stored.
                    .col(exact_string(manager, Sessions::TokenHash, 64).unique_key())
                    .col(ColumnDef::new(Sessions::UserAgent).string_len(512).not_null())
                    .col(instant(manager, Sessions::CreatedAt))
                    .col(instant(manager, Sessions::LastUsedAt))
                    .col(instant(manager, Sessions::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // Serves listing and revoking one account's sessions.
        manager
            .create_index(
                Index::create()
                    .name("sessions_account")
                    .table(Sessions::Table)
                    .col(Sessions::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginChallenges::Table)
                    .col(exact_string(manager, LoginChallenges::TokenHash, 64).primary_key())
                    .col(exact_string(manager, LoginChallenges::AccountId, 36))
                    .col(instant(manager, LoginChallenges::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginFailures::Table)
                    .col(exact_string(manager, LoginFailures::Key, 128).primary_key())
                    .col(ColumnDef::new(LoginFailures::Failures).integer().not_null())
                    .col(instant(manager, LoginFailures::WindowStartedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(exact_string(manager, Roles::Name, 64).primary_key())
                    .col(ColumnDef::new(Roles::Abilities).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccountRoles::Table)
                    .col(exact_string(manager, AccountRoles::AccountId, 36))
                    .col(exact_string(manager, AccountRoles::Role, 64))
                    .primary_key(
                        Index::create()
                            .col(AccountRoles::AccountId)
                            .col(AccountRoles::Role),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AccountRoles::Table.into_iden(),
            Roles::Table.into_iden(),
            LoginFailures::Table.into_iden(),
            LoginChallenges::Table.into_iden(),
            Sessions::Table.into_iden(),
            RecoveryCodes::Table.into_iden(),
            TotpSecrets::Table.into_iden(),
            Credentials::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
