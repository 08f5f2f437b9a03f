//! The `orchestration` boundary: the fabric's own tables (the two-phase commit
//! decision log, import cursors, singleton job leases, saga runs, live instances), and
//! the `outbox` schema laid out on every database. Every layer's tables are defined
//! here, at the bottom, so that laying out the databases needs nothing above them.

pub(crate) mod outbox;
pub(crate) mod saga;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::boundary::Boundary;

/// The boundary whose database coordinates two-phase commits.
pub const COORDINATOR_BOUNDARY: &str = "orchestration";

/// The `orchestration` boundary. Register it (first) with the domain boundaries; its
/// database is the coordinator database for two-phase commits.
#[must_use]
pub fn boundary() -> Boundary {
    Boundary::new::<Migrator>(COORDINATOR_BOUNDARY)
}

#[derive(Debug)]
struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(TwoPhaseDecisionLog),
            Box::new(ImportCursors),
            Box::new(WorkerLeases),
            Box::new(saga::SagaTables),
            Box::new(Instances),
        ]
    }
}

#[derive(DeriveIden)]
enum TwoPhaseDecisions {
    Table,
    RunId,
    Decision,
    Participants,
    DecidedAt,
}

/// `two_phase_decisions`: one decision (`commit` or `abort`) per distributed run.
struct TwoPhaseDecisionLog;

impl MigrationName for TwoPhaseDecisionLog {
    fn name(&self) -> &'static str {
        "m20261121_000001_two_phase_decisions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TwoPhaseDecisionLog {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut decided_at = ColumnDef::new(TwoPhaseDecisions::DecidedAt);
        match manager.get_database_backend() {
            DbBackend::MySql => decided_at.custom("DATETIME(6)"),
            _ => decided_at.timestamp_with_time_zone(),
        };
        manager
            .create_table(
                Table::create()
                    .table(TwoPhaseDecisions::Table)
                    .col(
                        ColumnDef::new(TwoPhaseDecisions::RunId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TwoPhaseDecisions::Decision)
                            .string_len(8)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TwoPhaseDecisions::Participants)
                            .text()
                            .not_null(),
                    )
                    .col(decided_at.not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TwoPhaseDecisions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ImportCursorsTable {
    #[sea_orm(iden = "import_cursors")]
    Table,
    Name,
    Position,
}

/// `import_cursors`: how many rows of each named import have been committed.
struct ImportCursors;

impl MigrationName for ImportCursors {
    fn name(&self) -> &'static str {
        "m20261121_000002_import_cursors"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ImportCursors {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportCursorsTable::Table)
                    .col(
                        ColumnDef::new(ImportCursorsTable::Name)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ImportCursorsTable::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ImportCursorsTable::Table).to_owned())
            .await
    }
}

/// `worker_leases` and its columns, for the migration and for `host::lease`.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum WorkerLeasesTable {
    #[sea_orm(iden = "worker_leases")]
    Table,
    Name,
    Holder,
    ExpiresAtMs,
    LastTickMs,
}

/// `worker_leases`: per singleton job, the instance holding it, until when (ms since
/// the Unix epoch), and the last tick run by any instance.
struct WorkerLeases;

impl MigrationName for WorkerLeases {
    fn name(&self) -> &'static str {
        "m20261122_000001_worker_leases"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WorkerLeases {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WorkerLeasesTable::Table)
                    .col(
                        ColumnDef::new(WorkerLeasesTable::Name)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WorkerLeasesTable::Holder)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WorkerLeasesTable::ExpiresAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WorkerLeasesTable::LastTickMs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WorkerLeasesTable::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum InstancesTable {
    #[sea_orm(iden = "instances")]
    Table,
    InstanceId,
    StartedAt,
    HeartbeatAt,
}

/// `instances`: every running fabric that may prepare transactions, with its last
/// heartbeat, so that recovery knows whose prepared transactions nobody will finish.
struct Instances;

impl MigrationName for Instances {
    fn name(&self) -> &'static str {
        "m20261201_000001_instances"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Instances {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let timestamp = |column| {
            let mut column = ColumnDef::new(column);
            match manager.get_database_backend() {
                DbBackend::MySql => column.custom("DATETIME(6)"),
                _ => column.timestamp_with_time_zone(),
            };
            column.not_null().to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(InstancesTable::Table)
                    .col(
                        ColumnDef::new(InstancesTable::InstanceId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(timestamp(InstancesTable::StartedAt))
                    .col(timestamp(InstancesTable::HeartbeatAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InstancesTable::Table).to_owned())
            .await
    }
}
