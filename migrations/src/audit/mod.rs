//! Migrations of the audit boundary.

mod m20261122_000001_entries;

use sea_orm_migration::prelude::*;

/// Runs the audit boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261122_000001_entries::Migration)]
    }
}
