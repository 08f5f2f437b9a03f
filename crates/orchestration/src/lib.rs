//! Switchyard's infrastructure: persistence boundaries, their placement on databases,
//! per-boundary migrations, and units of work that span boundaries.
//!
//! This crate knows no domain. Domain crates reach it only as data: a boundary's name
//! and migrator, and closures that run inside a unit of work.

mod batch;
mod boundary;
mod database;
mod error;
mod fabric;
mod fault;
mod migrate;
mod schema;
mod topology;
mod two_phase;
mod unit_of_work;

#[cfg(feature = "testing")]
pub mod testing;

pub use batch::{Batch, BatchOptions, BatchProgress, Import, ImportError, ImportReport, Upsert};
pub use boundary::Boundary;
pub use database::{Backend, DatabaseId};
pub use error::{FabricError, UnitOfWorkError};
pub use fabric::{DatabaseHealth, Fabric};
pub use migrate::{BoundaryMigrations, MigrationPlan};
pub use schema::{COORDINATOR_BOUNDARY, boundary};
pub use topology::{DatabaseUrl, Placement, Topology};
pub use two_phase::{RecoveryError, RecoveryReport};
pub use unit_of_work::{
    CommitPlan, Completed, Outcome, Pipeline, RunSummary, StepSummary, UnitOfWork,
};
