//! Per-boundary migrations: each boundary's migrator runs on a connection scoped to the
//! boundary, so its tables and its history table both live in the boundary's schema.

use std::fmt;

use crate::topology::DatabaseId;

/// The migration state of one boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundaryMigrations {
    /// The boundary.
    pub boundary: &'static str,
    /// The database that holds it.
    pub database: DatabaseId,
    /// Applied migrations, oldest first.
    pub applied: Vec<String>,
    /// Migrations not yet applied, in the order they will run.
    pub pending: Vec<String>,
}

impl fmt::Display for BoundaryMigrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<14} {:>3} applied, {:>3} pending   on {}",
            self.boundary,
            self.applied.len(),
            self.pending.len(),
            self.database
        )?;
        for name in &self.pending {
            write!(f, "\n{:<14}   pending: {name}", "")?;
        }
        Ok(())
    }
}

/// What migrating one boundary would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The boundary.
    pub boundary: &'static str,
    /// Its database.
    pub database: DatabaseId,
    /// Migrations not yet applied, in the order they will run.
    pub pending: Vec<String>,
    /// The statements they would run, captured from a dry run that was rolled back;
    /// `None` where DDL is not transactional (MySQL), so no dry run is possible.
    pub sql: Option<Vec<String>>,
}

impl fmt::Display for MigrationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}: ", self.boundary, self.database)?;
        if self.pending.is_empty() {
            return f.write_str("up to date");
        }
        write!(f, "{} pending", self.pending.len())?;
        for name in &self.pending {
            write!(f, "\n  - {name}")?;
        }
        match &self.sql {
            Some(sql) => {
                for statement in sql {
                    write!(f, "\n    {statement};")?;
                }
                Ok(())
            }
            None => write!(
                f,
                "\n    (no dry run: DDL on this engine is not transactional)"
            ),
        }
    }
}

/// Whether a captured statement is the migration's own work rather than the migrator's
/// bookkeeping (its history table, catalog probes, savepoints).
pub(crate) fn is_migration_work(sql: &str) -> bool {
    let head = sql.trim_start().to_ascii_uppercase();
    !sql.contains("seaql_migrations")
        && ![
            "SELECT",
            "SAVEPOINT",
            "RELEASE",
            "ROLLBACK",
            "BEGIN",
            "COMMIT",
        ]
        .iter()
        .any(|verb| head.starts_with(verb))
}
