//! Attempts at a step: the retry loop (the same for an action and its compensation,
//! told apart by [`Direction`]), one attempt of each kind of step, and the two ways a
//! step's checkpoint commits: in the step's own unit of work (a local step) or in a
//! transaction of its own after the call (an external step).

use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseTransaction, DbErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use super::decide::StepEnd;
use super::driver::Driver;
use super::erased::{ErasedExternal, ErasedLocal};
use super::store::{self, Expect, NewRun, StepRow};
use super::{
    BoxFuture, IdempotencyKey, RunState, SagaContext, StepDefinition, StepError, StepKind,
    StepRecord, StepState,
};
use crate::clock::as_stored;
use crate::schema::COORDINATOR_BOUNDARY;
use crate::sql::begin_write;
use crate::unit_of_work::UnitOfWork;

/// Which way a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Its action.
    Act,
    /// Its compensation: a refusal counts as a failure.
    Compensate,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::Act => "step",
            Self::Compensate => "compensating step",
        }
    }
}

/// How a step's attempts begin.
pub(super) enum Start {
    /// With an attempt, as the run's attempts so far count on.
    Afresh,
    /// With this error as the first attempt's outcome: it failed as the first of
    /// local steps run together (see [`Driver::local_together`]).
    Failed(StepError),
    /// With a call whose attempt the checkpoint before it already counted, renewing
    /// the lease ([`store::Then::Call`]).
    Recorded,
}

/// How a step's unit of work first makes sure that the run is its driver's.
#[derive(Clone, Copy)]
pub(super) enum Guard<'a> {
    /// The run is stored: renew its lease, as it is expected to be, for this attempt.
    Renew(Expect<'a>, u32),
    /// The run is new: insert it, unless its key is taken.
    Insert(&'a NewRun),
}

impl<I> Driver<'_, I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Makes attempts at step `definition` in `direction`: calls `once` with each
    /// attempt's number, counting on from the `attempt`s already recorded, until one
    /// succeeds, the run is lost or stopped, or the step's retry policy gives up. Each
    /// attempt runs under the step's timeout; an external step's lease is renewed
    /// before each call, but for a first call that the checkpoint before it already
    /// counted (`Start::Recorded`). `Ok(Err(end))` says how it ended without
    /// succeeding.
    async fn attempts<'a, T>(
        &self,
        definition: &StepDefinition<I>,
        expect: Expect<'_>,
        mut attempt: u32,
        direction: Direction,
        start: Start,
        once: impl Fn(u32) -> BoxFuture<'a, Result<Option<T>, StepError>>,
    ) -> Result<Result<T, StepEnd>, DbErr> {
        let policy = definition.policy;
        let name = definition.name;
        let external = matches!(definition.kind, StepKind::External(_));
        let what = direction.label();
        // An external action that failed may have taken effect on the other side.
        let maybe_done = external && direction == Direction::Act;
        let (mut failed, mut recorded) = match start {
            Start::Afresh => (None, false),
            Start::Failed(error) => (Some(error), false),
            Start::Recorded => (None, true),
        };
        loop {
            attempt += 1;
            if external
                && !std::mem::take(&mut recorded)
                && !store::renew(self.db(), expect, attempt, self.now(), self.saga.lease).await?
            {
                return Ok(Err(StepEnd::Stopped));
            }
            let span = match direction {
                Direction::Act => tracing::info_span!("saga_step", step = name, attempt),
                Direction::Compensate => {
                    tracing::info_span!("saga_compensation", step = name, attempt)
                }
            };
            let outcome = match failed.take() {
                Some(error) => Ok(Err(error)),
                None => {
                    tokio::time::timeout(policy.timeout, once(attempt))
                        .instrument(span)
                        .await
                }
            };
            let error = match outcome {
                Ok(Ok(Some(done))) => return Ok(Ok(done)),
                Ok(Ok(None)) => return Ok(Err(StepEnd::Stopped)),
                Ok(Err(StepError::Transient(error))) => error,
                Ok(Err(StepError::Rejected(rejection))) if direction == Direction::Act => {
                    tracing::info!(step = name, %rejection, "step refused; compensating");
                    return Ok(Err(StepEnd::Rejected(rejection)));
                }
                // A compensation's refusal is as final as a permanent error.
                Ok(Err(error)) => {
                    return Ok(Err(StepEnd::Failed {
                        error: format!("{what} `{name}`: {error}"),
                        maybe_done,
                    }));
                }
                Err(_) => format!("timed out after {:?}", policy.timeout),
            };
            let error = format!("{what} `{name}` attempt {attempt}: {error}");
            tracing::warn!(%error, "saga {what} failed");
            if attempt >= policy.max_attempts {
                return Ok(Err(StepEnd::Failed { error, maybe_done }));
            }
            if !store::record_failure(self.db(), expect, attempt, &error, self.now()).await?
                || !self.back_off(policy.backoff.jittered(attempt)).await
            {
                return Ok(Err(StepEnd::Stopped));
            }
        }
    }

    /// Runs step `position` forward, its attempts beginning as `start` says, until it
    /// takes effect, refuses, or fails for good.
    pub(super) async fn forward(
        &self,
        definition: &StepDefinition<I>,
        position: u32,
        input: &I,
        outputs: &mut [(&'static str, Option<Value>)],
        row: &store::RunRow,
        start: Start,
    ) -> Result<StepEnd, DbErr> {
        let expect = self.expect(RunState::Running, position);
        let key = IdempotencyKey {
            run_id: self.id,
            step: definition.name,
        };
        let started_at = row.step_started_at.unwrap_or_else(Utc::now);
        let (earlier, key) = (&*outputs, &key);
        let ended = self
            .attempts(
                definition,
                expect,
                row.status.attempts,
                Direction::Act,
                start,
                move |attempt| {
                    Box::pin(async move {
                        let context = SagaContext {
                            run_id: self.id,
                            input,
                            outputs: earlier,
                            attempt,
                            now: self.now(),
                        };
                        match &definition.kind {
                            StepKind::Local(step) => {
                                let guard = Expect {
                                    uncancelled: true,
                                    ..expect
                                };
                                self.local_forward(
                                    step.as_ref(),
                                    &context,
                                    guard,
                                    position,
                                    started_at,
                                )
                                .await
                            }
                            StepKind::External(step) => {
                                self.external_forward(
                                    step.as_ref(),
                                    &context,
                                    key,
                                    expect,
                                    position,
                                    started_at,
                                )
                                .await
                            }
                        }
                    })
                },
            )
            .await?;
        Ok(match ended {
            Ok(output) => {
                outputs[position as usize].1 = Some(output);
                StepEnd::Done
            }
            Err(end) => end,
        })
    }

    /// One attempt of a local step: the step and its checkpoint in one guarded unit
    /// of work. `Ok(None)` if the lease was lost (nothing committed).
    async fn local_forward(
        &self,
        step: &dyn ErasedLocal<I>,
        context: &SagaContext<'_, I>,
        expect: Expect<'_>,
        position: u32,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<Option<Value>, StepError> {
        let (attempt, name) = (context.attempt, self.saga.steps[position as usize].name);
        let (id, then) = (self.id, self.then(position + 1));
        let done = self
            .guarded(Guard::Renew(expect, attempt), async |uow| {
                let output = step.act(context, uow).await?;
                let row = StepRow {
                    position,
                    name,
                    output: Some(&output),
                    attempts: attempt,
                    started_at,
                };
                uow.step(COORDINATOR_BOUNDARY, "saga_checkpoint", async |tx| {
                    store::checkpoint_done(tx, id, &[row], then, self.now()).await
                })
                .await?;
                crate::fault::point(&format!("saga.{name}.before_commit"));
                Ok(output)
            })
            .await?;
        if done.is_some() {
            crate::fault::point(&format!("saga.{name}.after_commit"));
        }
        Ok(done)
    }

    /// One attempt of an external step: the call, then the checkpoint in its own
    /// transaction. `Ok(None)` if the lease was lost.
    async fn external_forward(
        &self,
        step: &dyn ErasedExternal<I>,
        context: &SagaContext<'_, I>,
        key: &IdempotencyKey,
        expect: Expect<'_>,
        position: u32,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<Option<Value>, StepError> {
        let (attempt, name) = (context.attempt, key.step);
        crate::fault::point(&format!("saga.{name}.before_call"));
        let output = step.act(context, key).await?;
        crate::fault::point(&format!("saga.{name}.after_call"));
        // The call after an external step is counted when it is made, after the run
        // is read again: this checkpoint's guard does not see a cancellation.
        let then = match self.then(position + 1) {
            store::Then::Call => store::Then::Step,
            then => then,
        };
        let checkpointed = self
            .checkpoint(expect, attempt, async |tx| {
                let row = StepRow {
                    position,
                    name,
                    output: Some(&output),
                    attempts: attempt,
                    started_at,
                };
                store::checkpoint_done(tx, self.id, &[row], then, self.now()).await
            })
            .await?;
        Ok(checkpointed.then_some(output))
    }

    /// Compensates step `position` until it is undone or fails for good.
    pub(super) async fn backward(
        &self,
        definition: &StepDefinition<I>,
        position: u32,
        input: &I,
        outputs: &[(&'static str, Option<Value>)],
        row: &store::RunRow,
    ) -> Result<StepEnd, DbErr> {
        let expect = self.expect(RunState::Compensating, position + 1);
        let key = IdempotencyKey {
            run_id: self.id,
            step: definition.name,
        };
        let (output, key) = (&outputs[position as usize].1, &key);
        let ended = self
            .attempts(
                definition,
                expect,
                row.status.attempts,
                Direction::Compensate,
                Start::Afresh,
                move |attempt| {
                    Box::pin(async move {
                        let context = SagaContext {
                            run_id: self.id,
                            input,
                            outputs,
                            attempt,
                            now: self.now(),
                        };
                        match &definition.kind {
                            StepKind::Local(step) => {
                                self.local_backward(
                                    step.as_ref(),
                                    &context,
                                    output.clone(),
                                    expect,
                                    position,
                                )
                                .await
                            }
                            StepKind::External(step) => {
                                self.external_backward(
                                    step.as_ref(),
                                    &context,
                                    key,
                                    output.clone(),
                                    expect,
                                    position,
                                )
                                .await
                            }
                        }
                    })
                },
            )
            .await?;
        Ok(ended.map_or_else(|end| end, |()| StepEnd::Done))
    }

    /// One attempt of an external compensation: the call, then the checkpoint in its
    /// own transaction. `Ok(None)` if the lease was lost.
    async fn external_backward(
        &self,
        step: &dyn ErasedExternal<I>,
        context: &SagaContext<'_, I>,
        key: &IdempotencyKey,
        output: Option<Value>,
        expect: Expect<'_>,
        position: u32,
    ) -> Result<Option<()>, StepError> {
        step.compensate(context, key, output).await?;
        let checkpointed = self
            .checkpoint(expect, context.attempt, async |tx| {
                store::checkpoint_compensated(tx, self.id, position, self.now()).await
            })
            .await?;
        Ok(checkpointed.then_some(()))
    }

    /// One attempt of a local compensation with its checkpoint; `Ok(None)` if the
    /// lease was lost. A step that never took effect (no output) has nothing to undo.
    async fn local_backward(
        &self,
        step: &dyn ErasedLocal<I>,
        context: &SagaContext<'_, I>,
        output: Option<Value>,
        expect: Expect<'_>,
        position: u32,
    ) -> Result<Option<()>, StepError> {
        let id = self.id;
        self.guarded(Guard::Renew(expect, context.attempt), async |uow| {
            if let Some(output) = output {
                step.compensate(context, output, uow).await?;
            }
            uow.step(COORDINATOR_BOUNDARY, "saga_checkpoint", async |tx| {
                store::checkpoint_compensated(tx, id, position, self.now()).await
            })
            .await
        })
        .await
    }

    /// Runs `work` in a unit of work that first makes the run this driver's, as
    /// `guard` says: the work's effect and its checkpoint then commit only while this
    /// driver holds the run. `Ok(None)` if the lease was lost or the new run's key is
    /// taken (nothing committed).
    async fn guarded<T>(
        &self,
        guard: Guard<'_>,
        work: impl AsyncFnOnce(&mut UnitOfWork<StepError>) -> Result<T, StepError>,
    ) -> Result<Option<T>, StepError> {
        let lease = self.saga.lease;
        let mut lost = false;
        let run = self
            .sagas
            .pipelines()
            .pipeline(self.saga.name)
            .run(async |uow: &mut UnitOfWork<StepError>| {
                let held = uow
                    .step(COORDINATOR_BOUNDARY, "saga_lease", async |tx| match guard {
                        Guard::Renew(expect, attempt) => {
                            store::renew(tx, expect, attempt, self.now(), lease).await
                        }
                        Guard::Insert(new) => store::insert_run(tx, new).await,
                    })
                    .await?;
                if !held {
                    lost = true;
                    return Err(StepError::transient("the run's lease was lost"));
                }
                work(uow).await
            })
            .await;
        match run {
            Ok(done) => Ok(Some(done.value)),
            Err(_) if lost => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// After an external call: renews the run's lease (as `expect` says it must still
    /// be) and writes the checkpoint in one transaction; `false` if the lease was lost.
    async fn checkpoint(
        &self,
        expect: Expect<'_>,
        attempt: u32,
        write: impl AsyncFnOnce(&DatabaseTransaction) -> Result<(), DbErr>,
    ) -> Result<bool, DbErr> {
        let tx = begin_write(self.db()).await?;
        if !store::renew(&tx, expect, attempt, self.now(), self.saga.lease).await? {
            return Ok(false);
        }
        write(&tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// How consecutive local steps run as one unit of work ended.
pub(super) enum Together {
    /// They all took effect; their checkpoints, as stored, committed with them.
    Done(Vec<StepRecord>),
    /// Nothing committed: the lease was lost, or the new run's key is taken.
    Lost,
    /// Nothing committed: one of them failed, or they ran out of time. They run one
    /// at a time from the first, each with its own retries; the first step's error,
    /// if it was the first that failed, counts as its attempt.
    Failed(Option<StepError>),
}

/// A local step of a saga, at its position.
pub(super) struct LocalAt<'s, I> {
    pub(super) position: u32,
    pub(super) definition: &'s StepDefinition<I>,
    pub(super) step: &'s dyn ErasedLocal<I>,
}

impl<I> Driver<'_, I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Runs the local steps `steps` (consecutive, at least one: see
    /// [`Driver::together`]) as one unit of work guarded by `guard`, with their
    /// checkpoints: one commit for all of them, each step seeing the outputs of those
    /// before it. Nothing of a failure is stored: the caller runs the steps again one
    /// at a time (a later step's failure makes the earlier ones run again; the first
    /// step's error is its first attempt). On success `outputs` holds the steps'
    /// outputs.
    pub(super) async fn local_together(
        &self,
        steps: &[LocalAt<'_, I>],
        guard: Guard<'_>,
        input: &I,
        outputs: &mut [(&'static str, Option<Value>)],
        row: &store::RunRow,
    ) -> Together {
        let first = steps.first().map_or(0, |step| step.position);
        let next = steps.last().map_or(0, |step| step.position + 1);
        let (id, then) = (self.id, self.then(next));
        let timeout: Duration = steps.iter().map(|s| s.definition.policy.timeout).sum();
        let mut seen = outputs.to_vec();
        // The position of the step being run, until the checkpoint is written.
        let mut running = None;
        let mut done: Vec<StepRecord> = Vec::with_capacity(steps.len());
        let mut checkpointed_at = self.now();
        let work = self.guarded(guard, async |uow| {
            for local in steps {
                let (position, name) = (local.position, local.definition.name);
                let (attempt, started_at) = if position == first {
                    let started_at = row.step_started_at.unwrap_or_else(Utc::now);
                    (row.status.attempts + 1, started_at)
                } else {
                    (1, Utc::now())
                };
                let context = SagaContext {
                    run_id: id,
                    input,
                    outputs: &seen,
                    attempt,
                    now: self.now(),
                };
                let span = tracing::info_span!("saga_step", step = name, attempt);
                running = Some(position);
                let output = local.step.act(&context, uow).instrument(span).await?;
                seen[position as usize].1 = Some(output.clone());
                done.push(StepRecord {
                    position,
                    name: name.to_owned(),
                    state: StepState::Done,
                    output: Some(output),
                    attempts: attempt,
                    started_at,
                    completed_at: None,
                    compensated_at: None,
                });
            }
            running = None;
            let rows: Vec<StepRow<'_>> = done
                .iter()
                .map(|record| StepRow {
                    position: record.position,
                    name: &record.name,
                    output: record.output.as_ref(),
                    attempts: record.attempts,
                    started_at: record.started_at,
                })
                .collect();
            checkpointed_at = self.now();
            uow.step(COORDINATOR_BOUNDARY, "saga_checkpoint", async |tx| {
                store::checkpoint_done(tx, id, &rows, then, checkpointed_at).await
            })
            .await?;
            for record in &done {
                crate::fault::point(&format!("saga.{}.before_commit", record.name));
            }
            Ok(())
        });
        let error = match tokio::time::timeout(timeout, work).await {
            Ok(Err(error)) if running == Some(first) => return Together::Failed(Some(error)),
            Ok(Ok(Some(()))) => {
                outputs.clone_from_slice(&seen);
                for record in &mut done {
                    crate::fault::point(&format!("saga.{}.after_commit", record.name));
                    // As stored and read back: to the millisecond, the JSON parsed again.
                    record.started_at = as_stored(record.started_at);
                    record.completed_at = Some(as_stored(checkpointed_at));
                    record.output = record
                        .output
                        .as_ref()
                        .and_then(|output| serde_json::from_str(&output.to_string()).ok());
                }
                return Together::Done(done);
            }
            Ok(Ok(None)) => return Together::Lost,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("timed out after {timeout:?}"),
        };
        tracing::debug!(%error, "the saga's local steps did not commit together; running them one at a time");
        Together::Failed(None)
    }
}
