//! The operator role gains `orders.refund` (refund any order, at any time) and
//! `customers.verify` (verify customers, so their large orders go through), unless an
//! installation has redefined the role already: then it stays as it is.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Abilities,
}

/// The operator's abilities as the built-in roles' migration defined them, and now.
const BEFORE: &str = "audit.read ops.read ops.write orders.read.any";
const AFTER: &str = "audit.read customers.verify ops.read ops.write orders.read.any orders.refund";

async fn replace(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    manager
        .exec_stmt(
            Query::update()
                .table(Roles::Table)
                .value(Roles::Abilities, to)
                .and_where(Expr::col(Roles::Name).eq("operator"))
                .and_where(Expr::col(Roles::Abilities).eq(from))
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, BEFORE, AFTER).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, AFTER, BEFORE).await
    }
}
