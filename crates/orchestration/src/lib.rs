//! Switchyard's infrastructure: persistence boundaries, their placement on databases,
//! per-boundary migrations, units of work that span boundaries, and the host that
//! supervises background workers and scheduled jobs; the outbox and durable sagas.
//!
//! This crate knows no domain. Domain crates reach it only as data: a boundary's name
//! and migrator, and closures that run inside a unit of work.

mod batch;
mod boundary;
mod clock;
mod database;
mod error;
mod fabric;
mod fault;
mod host;
mod instance;
mod migrate;
mod outbox;
mod saga;
mod schema;
mod topology;
mod two_phase;
mod unit_of_work;

#[cfg(feature = "testing")]
pub mod testing;

pub use batch::{Batch, BatchOptions, BatchProgress, Import, ImportError, ImportReport, Upsert};
pub use boundary::Boundary;
pub use clock::Clock;
pub use database::{Backend, DatabaseId, DatabaseSettings, PoolStats, begin_write, is_unavailable};
pub use error::{FabricError, UnitOfWorkError};
pub use fabric::{DatabaseHealth, Fabric};
pub use host::{
    Backoff, HealthReporter, Host, HostError, HostFailure, HostHealth, Job, Policy, PolicyKind,
    RunningHost, Schedule, ShutdownReport, Tick, Worker, WorkerContext, WorkerError, WorkerState,
    WorkerStatus,
};
pub use migrate::{BoundaryMigrations, MigrationPlan};
pub use outbox::{
    Dispatcher, DispatcherOptions, Envelope, EventType, Handler, HandlerError, InvalidOptions,
    OUTBOX_SCHEMA, OutboxStatus, ReplayFilter, SubscriberStatus,
};
pub use saga::{
    ExternalStep, IdempotencyKey, LocalStep, MAX_KEY_LEN, RetryPolicy, RunDetails, RunFilter,
    RunState, RunStatus, Saga, SagaContext, SagaError, SagaHandle, SagaRecovery,
    SagaRecoveryOptions, StepError, StepRecord, StepState, check_key,
};
pub use schema::{COORDINATOR_BOUNDARY, boundary};
pub use topology::{DatabaseUrl, Placement, Topology};
pub use two_phase::{InDoubtRecovery, RecoveryError, RecoveryReport};
pub use unit_of_work::{
    CommitPlan, Completed, Outcome, Pipeline, RunSummary, StepSummary, UnitOfWork,
};
