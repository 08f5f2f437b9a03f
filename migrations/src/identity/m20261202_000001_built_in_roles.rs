//! The built-in roles: `admin` (every ability, `*`: those added later too),
//! `operator`, `catalog` and `customer`. An installation may redefine them
//! (`identity::define_role`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Abilities,
}

/// Each role and the abilities it grants, space-separated as the table stores them.
const ROLES: [(&str, &str); 4] = [
    ("admin", "*"),
    ("operator", "audit.read ops.read ops.write orders.read.any"),
    ("catalog", "catalog.write stock.write"),
    ("customer", "orders.place"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut insert = Query::insert();
        insert
            .into_table(Roles::Table)
            .columns([Roles::Name, Roles::Abilities])
            // A role of the name defined already stays as it is (`name = name`: MySQL has
            // no `DO NOTHING`).
            .on_conflict(
                OnConflict::column(Roles::Name)
                    .update_column(Roles::Name)
                    .to_owned(),
            );
        for (name, abilities) in ROLES {
            insert.values_panic([name.into(), abilities.into()]);
        }
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(Roles::Table)
                    .and_where(Expr::col(Roles::Name).is_in(ROLES.map(|(name, _)| name)))
                    .to_owned(),
            )
            .await
    }
}
