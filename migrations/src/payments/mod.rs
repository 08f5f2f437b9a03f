//! Migrations of the payments boundary.

mod m20261123_000001_payments_and_gateway;
mod m20261203_000001_refund_intents;

use sea_orm_migration::prelude::*;

/// Runs the payments boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_payments_and_gateway::Migration),
            Box::new(m20261203_000001_refund_intents::Migration),
        ]
    }
}
