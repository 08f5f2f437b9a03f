//! Migrations of the {{name}} boundary.

mod {{migration}};

use sea_orm_migration::prelude::*;

/// Runs the {{name}} boundary's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new({{migration}}::Migration)]
    }
}
