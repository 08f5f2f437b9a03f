//! Migrations of the identity boundary.

mod m20261201_000001_accounts;
mod m20261202_000001_built_in_roles;
mod m20261202_000002_verification_tokens;
mod m20261203_000001_refund_and_verify_abilities;

use sea_orm_migration::prelude::*;

/// Runs the identity boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261201_000001_accounts::Migration),
            Box::new(m20261202_000001_built_in_roles::Migration),
            Box::new(m20261202_000002_verification_tokens::Migration),
            Box::new(m20261203_000001_refund_and_verify_abilities::Migration),
        ]
    }
}
