//! Migrations of the orders boundary.

mod m20261121_000001_orders_and_lines;
mod m20261203_000001_refunded_quantities;

use sea_orm_migration::prelude::*;

/// Runs the orders boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_orders_and_lines::Migration),
            Box::new(m20261203_000001_refunded_quantities::Migration),
        ]
    }
}
