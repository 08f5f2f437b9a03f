//! A persistence boundary: a name that is also its schema, plus its migrator.

use std::fmt;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use sea_orm_migration::{MigrationStatus, MigratorTrait};

use crate::future::BoxFuture;
/// Every migration's name with whether it has been applied, in order.
type Statuses = Vec<(String, bool)>;

/// One domain crate's slice of persistence.
///
/// The name is the schema on PostgreSQL, the database on MySQL/MariaDB and the attached
/// file's alias on SQLite, so `inventory.stock_levels` means the same table everywhere.
#[derive(Clone, Copy)]
pub struct Boundary {
    name: &'static str,
    migrator: MigratorFns,
}

/// The two things the fabric asks of a migrator, captured as plain function pointers so
/// that boundaries of different migrator types fit in one list.
#[derive(Clone, Copy)]
struct MigratorFns {
    up: for<'a> fn(&'a DatabaseConnection) -> BoxFuture<'a, Result<(), DbErr>>,
    up_in: for<'a> fn(&'a DatabaseTransaction) -> BoxFuture<'a, Result<(), DbErr>>,
    status: for<'a> fn(&'a DatabaseConnection) -> BoxFuture<'a, Result<Statuses, DbErr>>,
}

impl Boundary {
    /// A boundary named `name` whose tables are created by the migrator `M`.
    ///
    /// The migrator's migrations must use unqualified table names: they run on a
    /// connection whose default schema is the boundary, and their history table lands
    /// inside the boundary's schema as well.
    #[must_use]
    pub fn new<M: MigratorTrait + 'static>(name: &'static str) -> Self {
        Self {
            name,
            migrator: MigratorFns {
                up: |db| Box::pin(M::up(db, None)),
                up_in: |tx| Box::pin(M::up(tx, None)),
                status: |db| {
                    Box::pin(async move {
                        Ok(M::get_migration_with_status_read_only(db)
                            .await?
                            .iter()
                            .map(|m| (m.name().to_owned(), m.status() == MigrationStatus::Applied))
                            .collect())
                    })
                },
            },
        }
    }

    /// The boundary's name, which is also its schema.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) async fn migrate_up(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        (self.migrator.up)(db).await
    }

    /// Runs the pending migrations inside `tx` (which the caller rolls back for a dry
    /// run).
    pub(crate) async fn migrate_up_in(&self, tx: &DatabaseTransaction) -> Result<(), DbErr> {
        (self.migrator.up_in)(tx).await
    }

    /// Every migration of this boundary with whether it has been applied, in order.
    pub(crate) async fn migration_status(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Statuses, DbErr> {
        (self.migrator.status)(db).await
    }

    /// Boundary names become SQL identifiers and file names, so they are kept to a
    /// plain lowercase alphabet.
    pub(crate) fn has_valid_name(&self) -> bool {
        let mut chars = self.name.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && self.name.len() <= 48
    }
}

impl fmt::Debug for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Boundary")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
