//! Switchyard's infrastructure: persistence boundaries, their placement on databases,
//! per-boundary migrations, units of work that span boundaries, the transactional
//! outbox and its dispatcher, durable sagas, and the host that supervises background
//! workers and scheduled jobs.
//!
//! This crate knows no domain. Domain crates reach it only as data: a boundary's name
//! and migrator, and closures that run inside a unit of work.
//!
//! # Layers
//!
//! Each module imports only modules of the layers below it (the `module_layers` test
//! reads the sources and enforces it):
//!
//! 1. foundation: `fault`, `future`, [`clock`], [`backoff`], [`failure`], [`boundary`];
//! 2. databases: [`topology`], [`error`], [`sql`], [`database`], [`migrate`], [`schema`],
//!    `instance`, [`databases`];
//! 3. the worker host: [`host`];
//! 4. units of work: [`outbox`] (its tables), [`batch`], [`two_phase`],
//!    [`unit_of_work`], [`import`];
//! 5. delivering events: [`dispatch`];
//! 6. sagas: [`saga`];
//! 7. composition: [`fabric`], and `testing`.
//!
//! ```no_run
//! use orchestration::{Fabric, Topology, UnitOfWorkError};
//!
//! /// What the work can fail with: the unit of work itself, or a step's statement.
//! #[derive(Debug, thiserror::Error)]
//! enum Error {
//!     #[error(transparent)]
//!     UnitOfWork(#[from] UnitOfWorkError),
//!     #[error(transparent)]
//!     Database(#[from] sea_orm::DbErr),
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let topology = Topology::new("sqlite://./data".parse()?);
//! let fabric = Fabric::connect(&topology, [orchestration::schema::boundary()]).await?;
//! fabric.databases().migrate().await?;
//! let done = fabric
//!     .unit_of_work("count_leases")
//!     .run(async |uow| -> Result<u64, Error> {
//!         uow.step("orchestration", "count", async |tx| {
//!             use sea_orm::ConnectionTrait;
//!             let sql = "SELECT 1 FROM orchestration.worker_leases";
//!             tx.execute_unprepared(sql).await.map(|r| r.rows_affected())
//!         })
//!         .await
//!     })
//!     .await?;
//! println!("{}", done.summary);
//! # Ok(())
//! # }
//! ```

pub mod backoff;
pub mod batch;
pub mod boundary;
pub mod clock;
pub mod database;
pub mod databases;
pub mod dispatch;
pub mod error;
pub mod fabric;
pub mod failure;
mod fault;
mod future;
pub mod host;
pub mod import;
mod instance;
pub mod migrate;
pub mod outbox;
pub mod saga;
pub mod schema;
pub mod sql;
pub mod topology;
pub mod two_phase;
pub mod unit_of_work;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod layers;

pub use boundary::Boundary;
pub use error::{FabricError, UnitOfWorkError};
pub use fabric::Fabric;
pub use schema::COORDINATOR_BOUNDARY;
pub use topology::{DatabaseUrl, Topology};
pub use unit_of_work::UnitOfWork;
