//! Migrating the boundaries of the databases, planning a migration (with the SQL it
//! would run), and reading what is applied.

use std::sync::Arc;

use sea_orm::{DatabaseConnection, TransactionTrait};

use super::Databases;
use crate::boundary::Boundary;
use crate::database::Database;
use crate::error::FabricError;
use crate::migrate::{BoundaryMigrations, MigrationPlan, is_migration_work};
use crate::topology::Backend;

impl Databases {
    /// Migrates every boundary, in registration order, and returns the state after.
    ///
    /// # Errors
    /// A migration failed; the boundaries before it stay migrated.
    pub async fn migrate(&self) -> Result<Vec<BoundaryMigrations>, FabricError> {
        for (boundary, index) in &self.inner.boundaries {
            self.on_boundary_connection(boundary, *index, async |connection| {
                boundary.migrate_up(connection).await
            })
            .await?;
        }
        self.migration_status().await
    }

    /// What `migrate` would do, per boundary: the pending migrations and, on engines
    /// with transactional DDL (PostgreSQL, SQLite), the SQL they would run, captured
    /// from a dry run that is rolled back.
    ///
    /// # Errors
    /// A database could not be read, or a migration failed in the dry run.
    pub async fn migration_plan(&self) -> Result<Vec<MigrationPlan>, FabricError> {
        let states = self.migration_status().await?;
        let mut plans = Vec::with_capacity(states.len());
        for (state, (boundary, index)) in states.into_iter().zip(&self.inner.boundaries) {
            let database = &self.inner.databases[*index];
            let sql = if state.pending.is_empty() {
                Some(Vec::new())
            } else if database.url.backend() == Backend::MySql {
                None
            } else {
                Some(self.dry_run(database, boundary).await?)
            };
            plans.push(MigrationPlan {
                boundary: state.boundary,
                database: state.database,
                pending: state.pending,
                sql,
            });
        }
        Ok(plans)
    }

    async fn dry_run(
        &self,
        database: &Database,
        boundary: &Boundary,
    ) -> Result<Vec<String>, FabricError> {
        let failed = |source| FabricError::Migration {
            boundary: boundary.name(),
            database: database.id.clone(),
            source,
        };
        let mut connection = database
            .boundary_connection(boundary, &self.inner.settings)
            .await?;
        let captured = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        connection.set_metric_callback(move |info| {
            let sql = info.statement.to_string();
            if is_migration_work(&sql) {
                sink.lock().expect("not poisoned").push(sql);
            }
        });
        let result = async {
            let tx = connection.begin().await?;
            boundary.migrate_up_in(&tx).await?;
            tx.rollback().await
        }
        .await;
        connection.close().await.ok();
        result.map_err(failed)?;
        let sql = captured.lock().expect("not poisoned").clone();
        Ok(sql)
    }

    /// Applied and pending migrations of every boundary, in registration order.
    ///
    /// # Errors
    /// A database could not be read.
    pub async fn migration_status(&self) -> Result<Vec<BoundaryMigrations>, FabricError> {
        let mut states = Vec::with_capacity(self.inner.boundaries.len());
        for (boundary, index) in &self.inner.boundaries {
            let migrations = self
                .on_boundary_connection(boundary, *index, async |connection| {
                    boundary.migration_status(connection).await
                })
                .await?;
            let (applied, pending): (Vec<_>, Vec<_>) =
                migrations.into_iter().partition(|(_, applied)| *applied);
            states.push(BoundaryMigrations {
                boundary: boundary.name(),
                database: self.inner.databases[*index].id.clone(),
                applied: applied.into_iter().map(|(name, _)| name).collect(),
                pending: pending.into_iter().map(|(name, _)| name).collect(),
            });
        }
        Ok(states)
    }

    /// Runs `work` on a connection scoped to `boundary` (see
    /// `Database::boundary_connection`), closes it, and names the boundary in an error.
    async fn on_boundary_connection<T>(
        &self,
        boundary: &Boundary,
        index: usize,
        work: impl AsyncFnOnce(&DatabaseConnection) -> Result<T, sea_orm::DbErr>,
    ) -> Result<T, FabricError> {
        let database = &self.inner.databases[index];
        let connection = database
            .boundary_connection(boundary, &self.inner.settings)
            .await?;
        let result = work(&connection).await;
        connection.close().await.ok();
        result.map_err(|source| FabricError::Migration {
            boundary: boundary.name(),
            database: database.id.clone(),
            source,
        })
    }
}
