//! Migrations of the inventory boundary.

mod m20261121_000001_catalog_and_stock;
mod m20261203_000001_feed_imports;
mod m20261203_000002_feed_validators;

use sea_orm_migration::prelude::*;

/// Runs the inventory boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_catalog_and_stock::Migration),
            Box::new(m20261203_000001_feed_imports::Migration),
            Box::new(m20261203_000002_feed_validators::Migration),
        ]
    }
}
