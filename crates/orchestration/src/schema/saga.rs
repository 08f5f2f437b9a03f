//! The saga tables in the `orchestration` schema: `saga_runs` (one row per run: its
//! input, where it is, who drives it) and `saga_steps` (one row per step that took
//! effect: its output and timings). Times are milliseconds since the Unix epoch.

use sea_orm_migration::prelude::*;

/// `saga_runs` and its columns.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum SagaRuns {
    #[sea_orm(iden = "saga_runs")]
    Table,
    /// The run's id, a UUIDv7.
    Id,
    Saga,
    /// Unique per saga: starting the saga again with this key finds this run.
    IdempotencyKey,
    /// The input, as JSON.
    Input,
    /// `running`, `compensating`, `completed`, `compensated`, `failed` or `cancelled`.
    Status,
    /// Running: the steps that took effect. Compensating: the steps still to undo.
    CurrentStep,
    /// Failed attempts of the current step (or compensation) so far.
    Attempts,
    /// When the current step's first attempt began.
    StepStartedAtMs,
    CancelRequested,
    /// The instance driving the run, while one does.
    LeaseHolder,
    /// No other instance takes the run over before this time.
    LeaseExpiresAtMs,
    LastError,
    /// The business refusal that made the run compensate, as JSON.
    Rejection,
    CreatedAtMs,
    UpdatedAtMs,
    FinishedAtMs,
}

/// `saga_steps` and its columns.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum SagaSteps {
    #[sea_orm(iden = "saga_steps")]
    Table,
    RunId,
    /// The step's index in its saga.
    Position,
    Name,
    /// `done`, `unknown` (an external call whose outcome is not known) or `compensated`.
    State,
    /// The step's output, as JSON (none for `unknown`).
    Output,
    /// Attempts it took.
    Attempts,
    StartedAtMs,
    CompletedAtMs,
    CompensatedAtMs,
}

/// Creates both tables.
pub(crate) struct SagaTables;

impl MigrationName for SagaTables {
    fn name(&self) -> &'static str {
        "m20261122_000002_saga_runs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SagaTables {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SagaRuns::Table)
                    .col(
                        ColumnDef::new(SagaRuns::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SagaRuns::Saga).string_len(128).not_null())
                    .col(
                        ColumnDef::new(SagaRuns::IdempotencyKey)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(SagaRuns::Input).text().not_null())
                    .col(ColumnDef::new(SagaRuns::Status).string_len(16).not_null())
                    .col(ColumnDef::new(SagaRuns::CurrentStep).integer().not_null())
                    .col(ColumnDef::new(SagaRuns::Attempts).integer().not_null())
                    .col(ColumnDef::new(SagaRuns::StepStartedAtMs).big_integer())
                    .col(
                        ColumnDef::new(SagaRuns::CancelRequested)
                            .boolean()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SagaRuns::LeaseHolder).string_len(64))
                    .col(
                        ColumnDef::new(SagaRuns::LeaseExpiresAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SagaRuns::LastError).text())
                    .col(ColumnDef::new(SagaRuns::Rejection).text())
                    .col(
                        ColumnDef::new(SagaRuns::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SagaRuns::UpdatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SagaRuns::FinishedAtMs).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("saga_runs_key")
                    .table(SagaRuns::Table)
                    .col(SagaRuns::Saga)
                    .col(SagaRuns::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Recovery looks for unfinished runs whose lease ran out.
        manager
            .create_index(
                Index::create()
                    .name("saga_runs_status_lease")
                    .table(SagaRuns::Table)
                    .col(SagaRuns::Status)
                    .col(SagaRuns::LeaseExpiresAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SagaSteps::Table)
                    .col(ColumnDef::new(SagaSteps::RunId).string_len(36).not_null())
                    .col(ColumnDef::new(SagaSteps::Position).integer().not_null())
                    .col(ColumnDef::new(SagaSteps::Name).string_len(128).not_null())
                    .col(ColumnDef::new(SagaSteps::State).string_len(16).not_null())
                    .col(ColumnDef::new(SagaSteps::Output).text())
                    .col(ColumnDef::new(SagaSteps::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(SagaSteps::StartedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SagaSteps::CompletedAtMs).big_integer())
                    .col(ColumnDef::new(SagaSteps::CompensatedAtMs).big_integer())
                    .primary_key(
                        Index::create()
                            .col(SagaSteps::RunId)
                            .col(SagaSteps::Position),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SagaSteps::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SagaRuns::Table).to_owned())
            .await
    }
}
