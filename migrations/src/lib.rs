//! SeaORM migrations, one module per boundary. Each boundary's migrator runs on a
//! connection scoped to its schema, so table names here are unqualified and each
//! boundary's history table (`seaql_migrations`) lives inside its own schema.
//!
//! To add a boundary: add a module with a `Migrator`, a function returning its
//! [`Boundary`], and list it in [`all`].

pub mod audit;
mod columns;
pub mod inventory;
pub mod orders;
pub mod payments;

use orchestration::Boundary;

/// The inventory boundary (schema `inventory`).
#[must_use]
pub fn inventory() -> Boundary {
    Boundary::new::<inventory::Migrator>("inventory")
}

/// The orders boundary (schema `orders`).
#[must_use]
pub fn orders() -> Boundary {
    Boundary::new::<orders::Migrator>("orders")
}

/// The audit boundary (schema `audit`).
#[must_use]
pub fn audit() -> Boundary {
    Boundary::new::<audit::Migrator>("audit")
}

/// The payments boundary (schema `payments`).
#[must_use]
pub fn payments() -> Boundary {
    Boundary::new::<payments::Migrator>("payments")
}

/// Every boundary, in the order their migrations run. The fabric's own boundary
/// (`orchestration`, whose migrations live in the orchestration crate) comes first.
#[must_use]
pub fn all() -> Vec<Boundary> {
    vec![
        orchestration::schema::boundary(),
        inventory(),
        orders(),
        audit(),
        payments(),
    ]
}
