//! Per-boundary migrations: each boundary's migrator runs on a connection scoped to the
//! boundary, so its tables and its history table both live in the boundary's schema.

use std::fmt;

use crate::database::DatabaseId;

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
