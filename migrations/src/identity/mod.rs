//! Migrations of the identity boundary.

mod m20261201_000001_accounts;

use sea_orm_migration::prelude::*;

/// Runs the identity boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261201_000001_accounts::Migration)]
    }
}
