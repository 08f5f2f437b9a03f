//! Reading runs and their steps' checkpoints.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use serde_json::Value;
use uuid::Uuid;

use super::{runs, steps};
use crate::clock::from_epoch_millis;
use crate::saga::{RunDetails, RunState, RunStatus, StepRecord, StepState};
use crate::schema::saga::{SagaRuns, SagaSteps};

/// A stored run, with its input as text.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub(crate) status: RunStatus,
    pub(crate) input: String,
    pub(crate) step_started_at: Option<DateTime<Utc>>,
}

impl RunRow {
    /// The run as the checkpoint of its steps up to `next` (not the last) leaves it:
    /// at step `next`, with no attempts and no error yet.
    pub(crate) fn checkpointed(mut self, next: u32) -> Self {
        self.status.current_step = next;
        self.status.attempts = 0;
        self.status.last_error = None;
        self.step_started_at = None;
        self
    }
}

const RUN_COLUMNS: [SagaRuns; 16] = [
    SagaRuns::Id,
    SagaRuns::Saga,
    SagaRuns::IdempotencyKey,
    SagaRuns::Input,
    SagaRuns::Status,
    SagaRuns::CurrentStep,
    SagaRuns::Attempts,
    SagaRuns::StepStartedAtMs,
    SagaRuns::CancelRequested,
    SagaRuns::LeaseHolder,
    SagaRuns::LeaseExpiresAtMs,
    SagaRuns::LastError,
    SagaRuns::Rejection,
    SagaRuns::CreatedAtMs,
    SagaRuns::UpdatedAtMs,
    SagaRuns::FinishedAtMs,
];

fn select_runs() -> SelectStatement {
    Query::select().columns(RUN_COLUMNS).from(runs()).to_owned()
}

/// The run with this id.
pub(crate) async fn load(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<RunRow>, DbErr> {
    let select = select_runs()
        .and_where(Expr::col(SagaRuns::Id).eq(id.to_string()))
        .to_owned();
    one_run(db, &select).await
}

/// The run of `saga` started with `key`.
pub(crate) async fn find_by_key(
    db: &impl ConnectionTrait,
    saga: &str,
    key: &str,
) -> Result<Option<RunRow>, DbErr> {
    let select = select_runs()
        .and_where(Expr::col(SagaRuns::Saga).eq(saga))
        .and_where(Expr::col(SagaRuns::IdempotencyKey).eq(key))
        .to_owned();
    one_run(db, &select).await
}

async fn one_run(
    db: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Option<RunRow>, DbErr> {
    let row = db
        .query_one_raw(db.get_database_backend().build(select))
        .await?;
    row.as_ref().map(run_from).transpose()
}

/// Runs, newest first, in `states` if any are given.
pub(crate) async fn list(
    db: &impl ConnectionTrait,
    states: &[RunState],
    limit: u64,
) -> Result<Vec<RunStatus>, DbErr> {
    let mut select = select_runs();
    if !states.is_empty() {
        select.and_where(Expr::col(SagaRuns::Status).is_in(states.iter().map(|s| s.as_str())));
    }
    select.order_by(SagaRuns::Id, Order::Desc).limit(limit);
    let rows = db
        .query_all_raw(db.get_database_backend().build(&select))
        .await?;
    rows.iter()
        .map(|row| run_from(row).map(|run| run.status))
        .collect()
}

fn run_from(row: &QueryResult) -> Result<RunRow, DbErr> {
    let text = |column: &str| row.try_get::<String>("", column);
    let optional_text = |column: &str| row.try_get::<Option<String>>("", column);
    let count = |column: &str| -> Result<u32, DbErr> {
        Ok(u32::try_from(row.try_get::<i32>("", column)?).unwrap_or(0))
    };
    let id = text("id")?;
    let corrupt = |what: String| DbErr::Custom(format!("saga run {id}: {what}"));
    let status = text("status")?;
    let rejection = optional_text("rejection")?
        .map(|json| serde_json::from_str::<Value>(&json))
        .transpose()
        .map_err(|err| corrupt(format!("rejection: {err}")))?;
    Ok(RunRow {
        status: RunStatus {
            id: Uuid::parse_str(&id).map_err(|err| corrupt(format!("id: {err}")))?,
            saga: text("saga")?,
            idempotency_key: text("idempotency_key")?,
            state: RunState::parse(&status)
                .ok_or_else(|| corrupt(format!("unknown status `{status}`")))?,
            current_step: count("current_step")?,
            attempts: count("attempts")?,
            cancel_requested: row.try_get("", "cancel_requested")?,
            lease_holder: optional_text("lease_holder")?,
            lease_expires_at: from_epoch_millis(row.try_get("", "lease_expires_at_ms")?),
            last_error: optional_text("last_error")?,
            rejection,
            created_at: from_epoch_millis(row.try_get("", "created_at_ms")?),
            updated_at: from_epoch_millis(row.try_get("", "updated_at_ms")?),
            finished_at: row
                .try_get::<Option<i64>>("", "finished_at_ms")?
                .map(from_epoch_millis),
        },
        input: text("input")?,
        step_started_at: row
            .try_get::<Option<i64>>("", "step_started_at_ms")?
            .map(from_epoch_millis),
    })
}

/// The checkpoints of run `id`, by position.
pub(crate) async fn steps_of(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Vec<StepRecord>, DbErr> {
    let select = Query::select()
        .columns([
            SagaSteps::Position,
            SagaSteps::Name,
            SagaSteps::State,
            SagaSteps::Output,
            SagaSteps::Attempts,
            SagaSteps::StartedAtMs,
            SagaSteps::CompletedAtMs,
            SagaSteps::CompensatedAtMs,
        ])
        .from(steps())
        .and_where(Expr::col(SagaSteps::RunId).eq(id.to_string()))
        .order_by(SagaSteps::Position, Order::Asc)
        .to_owned();
    let rows = db
        .query_all_raw(db.get_database_backend().build(&select))
        .await?;
    rows.iter()
        .map(|row| {
            let corrupt = |what: String| DbErr::Custom(format!("saga run {id}: {what}"));
            let state: String = row.try_get("", "state")?;
            let output = row
                .try_get::<Option<String>>("", "output")?
                .map(|json| serde_json::from_str::<Value>(&json))
                .transpose()
                .map_err(|err| corrupt(format!("step output: {err}")))?;
            let position: i32 = row.try_get("", "position")?;
            let attempts: i32 = row.try_get("", "attempts")?;
            Ok(StepRecord {
                position: u32::try_from(position).unwrap_or(0),
                name: row.try_get("", "name")?,
                state: StepState::parse(&state)
                    .ok_or_else(|| corrupt(format!("unknown step state `{state}`")))?,
                output,
                attempts: u32::try_from(attempts).unwrap_or(0),
                started_at: from_epoch_millis(row.try_get("", "started_at_ms")?),
                completed_at: row
                    .try_get::<Option<i64>>("", "completed_at_ms")?
                    .map(from_epoch_millis),
                compensated_at: row
                    .try_get::<Option<i64>>("", "compensated_at_ms")?
                    .map(from_epoch_millis),
            })
        })
        .collect()
}

/// The run with its steps.
pub(crate) async fn details(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<RunDetails>, DbErr> {
    let Some(run) = load(db, id).await? else {
        return Ok(None);
    };
    let input = serde_json::from_str(&run.input)
        .map_err(|err| DbErr::Custom(format!("saga run {id}: input: {err}")))?;
    Ok(Some(RunDetails {
        run: run.status,
        input,
        steps: steps_of(db, id).await?,
    }))
}
