//! Driving one run: the loop that asks [`decide::next`] what to do, does it (an
//! attempt loop, a transition, the end of the run), and reads the run again, until the
//! run ends, is taken over, or the driver is told to stop.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::decide::{self, AfterAct, Next};
use super::start::run_store;
use super::store::{self, Compensation, Expect};
use super::{RunState, Saga, SagaError, Sagas, StepKind};
use sea_orm::DbErr;

/// Drives run `id` of `saga` until it is finished, failed, or taken over, or `stop`
/// is cancelled: then, after the step in flight, it gives up the run's lease. `fresh`
/// is the run as its start just inserted it, if it was.
pub(super) async fn drive<I>(
    sagas: &Sagas,
    saga: &Saga<I>,
    id: Uuid,
    stop: CancellationToken,
    fresh: Option<store::RunRow>,
) where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let span = tracing::info_span!("saga", saga = saga.name, run_id = %id);
    let driver = match Driver::new(sagas, saga, id, stop) {
        Ok(driver) => driver,
        Err(err) => {
            tracing::warn!(parent: &span, error = %err, "saga run not driven");
            return;
        }
    };
    if let Err(err) = driver.run(fresh).instrument(span.clone()).await {
        // The lease runs out and recovery resumes the run from its last checkpoint.
        tracing::warn!(parent: &span, error = %err, "saga run interrupted");
    } else if driver.stop.is_cancelled() {
        match store::release(driver.db, id, &driver.holder, driver.now()).await {
            Ok(true) => tracing::info!(parent: &span, "saga run handed over at shutdown"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(parent: &span, error = %err, "cannot hand the saga run over; its lease will run out");
            }
        }
    }
}

pub(super) struct Driver<'s, I> {
    pub(super) sagas: &'s Sagas,
    db: &'s DatabaseConnection,
    pub(super) saga: &'s Saga<I>,
    pub(super) id: Uuid,
    holder: String,
    /// Cancelled when this process stops driving runs.
    stop: CancellationToken,
}

impl<'s, I> Driver<'s, I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn new(
        sagas: &'s Sagas,
        saga: &'s Saga<I>,
        id: Uuid,
        stop: CancellationToken,
    ) -> Result<Self, SagaError> {
        Ok(Self {
            sagas,
            db: run_store(sagas)?.connection,
            saga,
            id,
            holder: sagas.databases().holder(),
            stop,
        })
    }

    /// Waits out a retry's backoff by the fabric's clock; `false` if told to stop
    /// meanwhile.
    pub(super) async fn back_off(&self, pause: Duration) -> bool {
        let clock = self.sagas.databases().clock();
        tokio::select! {
            () = clock.sleep_until(clock.now() + pause) => true,
            () = self.stop.cancelled() => false,
        }
    }

    /// The time by the fabric's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.sagas.databases().clock().now()
    }

    pub(super) fn db(&self) -> &DatabaseConnection {
        self.db
    }

    pub(super) fn expect(&self, state: RunState, step: u32) -> Expect<'_> {
        Expect {
            id: self.id,
            holder: &self.holder,
            state,
            step,
            uncancelled: false,
        }
    }

    /// Drives the run. `fresh` is the run as its start just inserted it: then nothing
    /// needs reading before its first step, if that step is local (see `known`).
    async fn run(&self, fresh: Option<store::RunRow>) -> Result<(), DbErr> {
        let (first, fresh) = match fresh {
            Some(row) => (row, true),
            None => match store::load(self.db(), self.id).await? {
                Some(row) => (row, false),
                None => return Ok(()),
            },
        };
        let input: I = match serde_json::from_str(&first.input) {
            Ok(input) => input,
            Err(err) => {
                // A run this code cannot read (an older release's input): an operator
                // must decide.
                let state = first.status.state;
                let step = first.status.current_step;
                if state.is_active() {
                    let error = format!("the input does not parse: {err}");
                    store::finish(
                        self.db(),
                        self.expect(state, step),
                        RunState::Failed,
                        Some(&error),
                        self.now(),
                    )
                    .await?;
                }
                return Ok(());
            }
        };
        let mut outputs: Vec<(&'static str, Option<Value>)> =
            self.saga.steps.iter().map(|s| (s.name, None)).collect();
        if !fresh {
            for record in store::steps_of(self.db(), self.id).await? {
                if let Some(slot) = outputs.get_mut(record.position as usize) {
                    slot.1 = record.output;
                }
            }
        }
        let steps = u32::try_from(self.saga.steps.len()).unwrap_or(u32::MAX);
        // The run as this driver left it, when it need not be read again: before a
        // local step, whose guard sees a cancellation or a lost lease in its own
        // transaction before any effect. An external call has no such guard, so the
        // run is read again before it.
        let local_next = |step: usize| {
            matches!(
                self.saga.steps.get(step).map(|s| &s.kind),
                Some(StepKind::Local(_))
            )
        };
        let mut known = (fresh && local_next(0)).then_some(first);
        loop {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            let row = match known.take() {
                Some(row) => row,
                None => match store::load(self.db(), self.id).await? {
                    Some(row) => row,
                    None => return Ok(()),
                },
            };
            let step = row.status.current_step;
            let now = self.now();
            match decide::next(&row.status, &self.holder, steps) {
                Next::Stop => return Ok(()),
                Next::Cancel { undo } => {
                    let why = Compensation {
                        undo,
                        rejection: None,
                        error: Some("cancelled by an operator"),
                        unknown: None,
                    };
                    let expect = self.expect(RunState::Running, step);
                    if !store::begin_compensating(self.db(), expect, &why, now).await? {
                        return Ok(());
                    }
                }
                Next::Complete => {
                    let expect = self.expect(RunState::Running, step);
                    store::finish(self.db(), expect, RunState::Completed, None, now).await?;
                    self.finished(RunState::Completed);
                    return Ok(());
                }
                Next::Act { position } => {
                    let definition = &self.saga.steps[position as usize];
                    let end = self
                        .forward(definition, position, &input, &mut outputs, &row)
                        .await?;
                    match decide::after_act(&end, position, steps) {
                        AfterAct::Completed => {
                            self.finished(RunState::Completed);
                            return Ok(());
                        }
                        AfterAct::Continue => {
                            if local_next(position as usize + 1) {
                                known = Some(row.checkpointed());
                            }
                        }
                        AfterAct::Reread => {}
                        AfterAct::Compensate {
                            undo,
                            rejection,
                            error,
                            unknown,
                        } => {
                            let why = Compensation {
                                undo,
                                rejection,
                                error,
                                unknown: unknown.then(|| {
                                    (
                                        position,
                                        definition.name,
                                        definition.policy.max_attempts,
                                        row.step_started_at.unwrap_or(now),
                                    )
                                }),
                            };
                            let expect = self.expect(RunState::Running, position);
                            if !store::begin_compensating(self.db(), expect, &why, self.now())
                                .await?
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                Next::Finish { state } => {
                    let expect = self.expect(RunState::Compensating, 0);
                    store::finish(self.db(), expect, state, None, now).await?;
                    self.finished(state);
                    return Ok(());
                }
                Next::Compensate { position } => {
                    let definition = &self.saga.steps[position as usize];
                    let end = self
                        .backward(definition, position, &input, &outputs, &row)
                        .await?;
                    match decide::after_compensation(end) {
                        Ok(true) => {}
                        Ok(false) => return Ok(()),
                        Err(error) => {
                            self.fail(position + 1, &error).await?;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    async fn fail(&self, step: u32, error: &str) -> Result<(), DbErr> {
        tracing::error!(
            step = self.saga.steps[step as usize - 1].name,
            error,
            "a compensation kept failing; the run is failed until an operator retries or cancels it"
        );
        store::finish(
            self.db(),
            self.expect(RunState::Compensating, step),
            RunState::Failed,
            Some(error),
            self.now(),
        )
        .await?;
        self.finished(RunState::Failed);
        Ok(())
    }

    fn finished(&self, state: RunState) {
        tracing::debug!(%state, "saga run finished");
        metrics::counter!("switchyard_saga_runs_finished_total", "saga" => self.saga.name, "state" => state.as_str())
            .increment(1);
    }
}
