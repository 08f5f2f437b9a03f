//! Migrations of the notifications boundary.

mod m20261202_000001_notifications;

use sea_orm_migration::prelude::*;

/// Runs the notifications boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261202_000001_notifications::Migration)]
    }
}
