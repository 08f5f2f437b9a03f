//! The saga tables' SQL: creating and finding runs, the guarded updates by which a
//! run's driver moves it on, claiming runs whose lease ran out, and the checkpoints.
//!
//! Every write by a driver is guarded by `lease_holder = <driver>` plus the state
//! and step it expects, so a driver that lost its lease (another instance took the
//! run over) changes nothing; in a step's transaction the guard is the first
//! statement, so it also holds the run's row lock until the commit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Cond, Expr, ExprTrait, LockBehavior, LockType, Order, Query, TableRef, UpdateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde_json::Value;
use uuid::Uuid;

mod read;

use crate::clock::{as_stored, epoch_millis, epoch_millis_after, from_epoch_millis};
use crate::saga::{RunDetails, RunState, RunStatus, StepRecord, StepState};
use crate::schema::COORDINATOR_BOUNDARY;
use crate::schema::saga::{SagaRuns, SagaSteps};
use crate::sql::{begin_write, execute, insert_if_absent};

pub(super) use read::{RunRow, details, find_by_key, list, load, steps_of};

pub(super) fn runs() -> TableRef {
    (Alias::new(COORDINATOR_BOUNDARY), SagaRuns::Table).into()
}

pub(super) fn steps() -> TableRef {
    (Alias::new(COORDINATOR_BOUNDARY), SagaSteps::Table).into()
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A run to insert, driven from the start by `holder`.
pub(super) struct NewRun {
    pub(super) id: Uuid,
    pub(super) saga: &'static str,
    pub(super) key: String,
    pub(super) input: String,
    pub(super) holder: String,
    pub(super) lease: Duration,
    pub(super) now: DateTime<Utc>,
}

impl NewRun {
    /// The run as [`insert_run`] stores it.
    pub(super) fn row(&self) -> RunRow {
        let now = as_stored(self.now);
        RunRow {
            status: RunStatus {
                id: self.id,
                saga: self.saga.to_owned(),
                idempotency_key: self.key.clone(),
                state: RunState::Running,
                current_step: 0,
                attempts: 0,
                cancel_requested: false,
                lease_holder: Some(self.holder.clone()),
                lease_expires_at: from_epoch_millis(epoch_millis_after(self.now, self.lease)),
                last_error: None,
                rejection: None,
                created_at: now,
                updated_at: now,
                finished_at: None,
            },
            input: self.input.clone(),
            step_started_at: None,
        }
    }
}

impl NewRun {
    /// The run as [`details`] reads it after the transaction that inserted it also
    /// completed it with `steps`, the checkpoints of all its steps as stored.
    pub(super) fn completed(&self, steps: Vec<StepRecord>) -> Option<RunDetails> {
        let finished_at = steps.last()?.completed_at?;
        let mut status = self.row().status;
        status.state = RunState::Completed;
        status.current_step = u32::try_from(steps.len()).ok()?;
        status.lease_holder = None;
        status.updated_at = finished_at;
        status.finished_at = Some(finished_at);
        Some(RunDetails {
            run: status,
            input: serde_json::from_str(&self.input).ok()?,
            steps,
        })
    }
}

/// Inserts `run` unless its saga already has a run with its key; `true` if inserted.
/// A concurrent insert of the same key waits for the first one's commit and then
/// inserts nothing.
pub(super) async fn insert_run(db: &impl ConnectionTrait, run: &NewRun) -> Result<bool, DbErr> {
    let now = epoch_millis(run.now);
    insert_if_absent(
        db,
        COORDINATOR_BOUNDARY,
        "saga_runs",
        &[
            "id",
            "saga",
            "idempotency_key",
            "input",
            "status",
            "current_step",
            "attempts",
            "cancel_requested",
            "lease_holder",
            "lease_expires_at_ms",
            "created_at_ms",
            "updated_at_ms",
        ],
        vec![
            run.id.to_string().into(),
            run.saga.into(),
            run.key.as_str().into(),
            run.input.as_str().into(),
            RunState::Running.as_str().into(),
            0i32.into(),
            0i32.into(),
            false.into(),
            run.holder.as_str().into(),
            epoch_millis_after(run.now, run.lease).into(),
            now.into(),
            now.into(),
        ],
    )
    .await
}

/// Where a driver expects the run to be: its guard.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expect<'a> {
    pub(super) id: Uuid,
    pub(super) holder: &'a str,
    pub(super) state: RunState,
    pub(super) step: u32,
    /// Also that no operator asked the run to stop.
    pub(super) uncancelled: bool,
}

impl Expect<'_> {
    fn guard(&self, update: &mut UpdateStatement) {
        update
            .and_where(Expr::col(SagaRuns::Id).eq(self.id.to_string()))
            .and_where(Expr::col(SagaRuns::LeaseHolder).eq(self.holder))
            .and_where(Expr::col(SagaRuns::Status).eq(self.state.as_str()))
            .and_where(Expr::col(SagaRuns::CurrentStep).eq(int(self.step)));
        if self.uncancelled {
            update.and_where(Expr::col(SagaRuns::CancelRequested).eq(false));
        }
    }
}

/// Renews the lease for attempt number `attempt` of the current step; `false` if the
/// run is not where `expect` says (the lease was lost). In a step's transaction this
/// also locks the run's row until the commit.
pub(super) async fn renew(
    db: &impl ConnectionTrait,
    expect: Expect<'_>,
    attempt: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, DbErr> {
    let mut update = Query::update();
    update
        .table(runs())
        .value(SagaRuns::LeaseExpiresAtMs, epoch_millis_after(now, lease))
        .value(SagaRuns::Attempts, int(attempt))
        .value(
            SagaRuns::StepStartedAtMs,
            Expr::col(SagaRuns::StepStartedAtMs).if_null(epoch_millis(now)),
        )
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now));
    expect.guard(&mut update);
    Ok(execute(db, &update).await? == 1)
}

/// Records failed attempt number `attempt` and its error; `false` if the lease was
/// lost.
pub(super) async fn record_failure(
    db: &impl ConnectionTrait,
    expect: Expect<'_>,
    attempt: u32,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = Query::update();
    update
        .table(runs())
        .value(SagaRuns::Attempts, int(attempt))
        .value(SagaRuns::LastError, error)
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now));
    expect.guard(&mut update);
    Ok(execute(db, &update).await? == 1)
}

/// A step's checkpoint as it is written.
pub(super) struct StepRow<'a> {
    pub(super) position: u32,
    pub(super) name: &'a str,
    pub(super) output: Option<&'a Value>,
    pub(super) attempts: u32,
    pub(super) started_at: DateTime<Utc>,
}

/// What the run does after a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    /// It goes on to its next step: no attempt at it yet.
    Step,
    /// It calls its next step, an external one, at once: the checkpoint also counts
    /// that call's first attempt, started now, as the renewal before a call does.
    Call,
    /// Nothing: that was the last step, and the run is completed.
    Complete,
}

/// The checkpoints of consecutive steps that took effect, in the caller's transaction
/// (after a successful [`renew`] or [`insert_run`]): the steps' rows, and the run moved
/// past the last of them, as `then` says.
pub(super) async fn checkpoint_done(
    tx: &impl ConnectionTrait,
    id: Uuid,
    done: &[StepRow<'_>],
    then: Then,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(next) = done.last().map(|step| step.position + 1) else {
        return Ok(());
    };
    insert_steps(tx, id, StepState::Done, done, now).await?;
    let called = then == Then::Call;
    let mut update = Query::update();
    update
        .table(runs())
        .value(SagaRuns::CurrentStep, int(next))
        .value(SagaRuns::Attempts, i32::from(called))
        .value(SagaRuns::StepStartedAtMs, called.then(|| epoch_millis(now)))
        .value(SagaRuns::LastError, Option::<String>::None)
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now))
        .and_where(Expr::col(SagaRuns::Id).eq(id.to_string()));
    if then == Then::Complete {
        update
            .value(SagaRuns::Status, RunState::Completed.as_str())
            .value(SagaRuns::LeaseHolder, Option::<String>::None)
            .value(SagaRuns::FinishedAtMs, epoch_millis(now));
    }
    execute(tx, &update).await?;
    Ok(())
}

/// Inserts `rows` in `state`, in one statement.
async fn insert_steps(
    tx: &impl ConnectionTrait,
    id: Uuid,
    state: StepState,
    rows: &[StepRow<'_>],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let completed = (state == StepState::Done).then(|| epoch_millis(now));
    let mut insert = Query::insert();
    insert.into_table(steps()).columns([
        SagaSteps::RunId,
        SagaSteps::Position,
        SagaSteps::Name,
        SagaSteps::State,
        SagaSteps::Output,
        SagaSteps::Attempts,
        SagaSteps::StartedAtMs,
        SagaSteps::CompletedAtMs,
    ]);
    for row in rows {
        insert.values_panic([
            id.to_string().into(),
            int(row.position).into(),
            row.name.into(),
            state.as_str().into(),
            row.output.map(Value::to_string).into(),
            int(row.attempts).into(),
            epoch_millis(row.started_at).into(),
            completed.into(),
        ]);
    }
    execute(tx, &insert).await?;
    Ok(())
}

/// Why a running run turns to compensation.
pub(super) struct Compensation<'a> {
    /// The steps to undo: those that took effect, plus an external step whose
    /// outcome is unknown.
    pub(super) undo: u32,
    pub(super) rejection: Option<&'a Value>,
    pub(super) error: Option<&'a str>,
    /// An external step that may have taken effect: its position, name, attempts and
    /// first attempt.
    pub(super) unknown: Option<(u32, &'a str, u32, DateTime<Utc>)>,
}

/// Turns a running run to compensation; `false` if the lease was lost.
pub(super) async fn begin_compensating(
    db: &DatabaseConnection,
    expect: Expect<'_>,
    why: &Compensation<'_>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let tx = begin_write(db).await?;
    let mut update = Query::update();
    update
        .table(runs())
        .value(SagaRuns::Status, RunState::Compensating.as_str())
        .value(SagaRuns::CurrentStep, int(why.undo))
        .value(SagaRuns::Attempts, 0)
        .value(SagaRuns::StepStartedAtMs, Option::<i64>::None)
        .value(SagaRuns::Rejection, why.rejection.map(Value::to_string))
        .value(SagaRuns::LastError, why.error)
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now));
    expect.guard(&mut update);
    if execute(&tx, &update).await? != 1 {
        return Ok(false);
    }
    if let Some((position, name, attempts, started_at)) = why.unknown {
        let row = StepRow {
            position,
            name,
            output: None,
            attempts,
            started_at,
        };
        insert_steps(&tx, expect.id, StepState::Unknown, &[row], now).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The checkpoint of a compensation, in the caller's transaction (after a successful
/// [`renew`]): the step is marked compensated and the run moves to the one before.
pub(super) async fn checkpoint_compensated(
    tx: &impl ConnectionTrait,
    id: Uuid,
    position: u32,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let step = Query::update()
        .table(steps())
        .value(SagaSteps::State, StepState::Compensated.as_str())
        .value(SagaSteps::CompensatedAtMs, epoch_millis(now))
        .and_where(Expr::col(SagaSteps::RunId).eq(id.to_string()))
        .and_where(Expr::col(SagaSteps::Position).eq(int(position)))
        .to_owned();
    execute(tx, &step).await?;
    let run = Query::update()
        .table(runs())
        .value(SagaRuns::CurrentStep, int(position))
        .value(SagaRuns::Attempts, 0)
        .value(SagaRuns::StepStartedAtMs, Option::<i64>::None)
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now))
        .and_where(Expr::col(SagaRuns::Id).eq(id.to_string()))
        .to_owned();
    execute(tx, &run).await?;
    Ok(())
}

/// Ends the run in `state` (final, or `failed` with `error`) and lets go of it;
/// `false` if the lease was lost.
pub(super) async fn finish(
    db: &impl ConnectionTrait,
    expect: Expect<'_>,
    state: RunState,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = Query::update();
    update
        .table(runs())
        .value(SagaRuns::Status, state.as_str())
        .value(SagaRuns::LeaseHolder, Option::<String>::None)
        .value(SagaRuns::FinishedAtMs, epoch_millis(now))
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now));
    if let Some(error) = error {
        update.value(SagaRuns::LastError, error);
    }
    expect.guard(&mut update);
    Ok(execute(db, &update).await? == 1)
}

/// Gives up `holder`'s lease of run `id` if it is unfinished: any instance's recovery
/// may claim it at once. `false` if the run is finished or held by another.
pub(super) async fn release(
    db: &impl ConnectionTrait,
    id: Uuid,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let update = Query::update()
        .table(runs())
        .value(SagaRuns::LeaseHolder, Option::<String>::None)
        .value(SagaRuns::LeaseExpiresAtMs, epoch_millis(now))
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now))
        .and_where(Expr::col(SagaRuns::Id).eq(id.to_string()))
        .and_where(Expr::col(SagaRuns::LeaseHolder).eq(holder))
        .and_where(
            Expr::col(SagaRuns::Status)
                .is_in([RunState::Running.as_str(), RunState::Compensating.as_str()]),
        )
        .to_owned();
    Ok(execute(db, &update).await? == 1)
}

/// Claims up to `limit` unfinished runs of `sagas` whose lease ran out, for `holder`
/// until `now + lease`. With `gone_after` (PostgreSQL, where instances heartbeat in
/// `orchestration.instances`), a run whose holder's instance has not heartbeaten for
/// that long is claimed too, before its lease runs out: its holder is gone. Concurrent
/// claimers skip each other's locked rows (PostgreSQL, MySQL); on SQLite the immediate
/// transaction makes one claimer.
pub(super) async fn claim_expired(
    db: &DatabaseConnection,
    holder: &str,
    sagas: &[&str],
    now: DateTime<Utc>,
    lease: Duration,
    limit: u64,
    gone_after: Option<Duration>,
) -> Result<Vec<(Uuid, String)>, DbErr> {
    let tx = begin_write(db).await?;
    let expired = Expr::col(SagaRuns::LeaseExpiresAtMs).lte(epoch_millis(now));
    let claimable = match gone_after {
        // A holder is `<instance>:<pid>`; the number is ours, not user input.
        Some(gone_after) => Cond::any().add(expired).add(Expr::cust(format!(
            "NOT EXISTS (SELECT 1 FROM \"{COORDINATOR_BOUNDARY}\".\"instances\" AS i \
             WHERE i.instance_id = split_part(lease_holder, ':', 1) \
             AND i.heartbeat_at > now() - make_interval(secs => {}))",
            gone_after.as_secs_f64()
        ))),
        None => Cond::all().add(expired),
    };
    let select = Query::select()
        .columns([SagaRuns::Id, SagaRuns::Saga])
        .from(runs())
        .and_where(
            Expr::col(SagaRuns::Status)
                .is_in([RunState::Running.as_str(), RunState::Compensating.as_str()]),
        )
        .cond_where(claimable)
        .and_where(Expr::col(SagaRuns::Saga).is_in(sagas.iter().copied()))
        .order_by(SagaRuns::LeaseExpiresAtMs, Order::Asc)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let rows = tx
        .query_all_raw(tx.get_database_backend().build(&select))
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("", "id")?;
        let saga: String = row.try_get("", "saga")?;
        let id = Uuid::parse_str(&id)
            .map_err(|err| DbErr::Custom(format!("saga run id `{id}`: {err}")))?;
        claimed.push((id, saga));
    }
    if !claimed.is_empty() {
        let update = Query::update()
            .table(runs())
            .value(SagaRuns::LeaseHolder, holder)
            .value(SagaRuns::LeaseExpiresAtMs, epoch_millis_after(now, lease))
            .and_where(Expr::col(SagaRuns::Id).is_in(claimed.iter().map(|(id, _)| id.to_string())))
            .to_owned();
        execute(&tx, &update).await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Asks run `id` to stop and compensate, if it is running; a `failed` run is
/// abandoned as `cancelled` at once. Returns the number of rows changed.
pub(super) async fn cancel(
    db: &impl ConnectionTrait,
    id: Uuid,
    state: RunState,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut update = Query::update();
    update
        .table(runs())
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now));
    match state {
        RunState::Failed => {
            update
                .value(SagaRuns::Status, RunState::Cancelled.as_str())
                .value(SagaRuns::FinishedAtMs, epoch_millis(now));
        }
        _ => {
            update.value(SagaRuns::CancelRequested, true);
        }
    }
    update
        .and_where(Expr::col(SagaRuns::Id).eq(id.to_string()))
        .and_where(Expr::col(SagaRuns::Status).eq(state.as_str()));
    execute(db, &update).await
}

/// Makes a `failed` run compensate again, at once, on whichever instance's recovery
/// claims it. Returns the number of rows changed.
pub(super) async fn retry(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let update = Query::update()
        .table(runs())
        .value(SagaRuns::Status, RunState::Compensating.as_str())
        .value(SagaRuns::Attempts, 0)
        .value(SagaRuns::LeaseHolder, Option::<String>::None)
        .value(SagaRuns::LeaseExpiresAtMs, 0)
        .value(SagaRuns::FinishedAtMs, Option::<i64>::None)
        .value(SagaRuns::UpdatedAtMs, epoch_millis(now))
        .and_where(Expr::col(SagaRuns::Id).eq(id.to_string()))
        .and_where(Expr::col(SagaRuns::Status).eq(RunState::Failed.as_str()))
        .to_owned();
    execute(db, &update).await
}
