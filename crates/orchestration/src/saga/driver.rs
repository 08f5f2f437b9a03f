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

use super::attempt::{Guard, LocalAt, Start, Together};
use super::decide::{self, AfterAct, Next};
use super::start::run_store;
use super::store::{self, Compensation, Expect};
use super::{RunDetails, RunState, Saga, SagaError, Sagas, StepKind};
use crate::databases::CommitPlan;
use crate::schema::COORDINATOR_BOUNDARY;
use sea_orm::DbErr;
use tokio::sync::oneshot;

/// Where the run a driver drives comes from.
pub(super) enum Origin {
    /// It is stored: resumed by recovery or an operator.
    Stored,
    /// It was just started and is not stored yet.
    Fresh(Fresh),
}

/// A run just started, not stored yet, and whom to tell whether it was.
pub(super) struct Fresh {
    pub(super) new: store::NewRun,
    /// Hears `Ok(true)` once the run is stored, `Ok(false)` if its key was taken.
    pub(super) stored: oneshot::Sender<Result<bool, DbErr>>,
    /// Hears the run as it ended, when the transaction that stored it also completed
    /// it: then the starter need not read it back.
    pub(super) ended: oneshot::Sender<RunDetails>,
}

impl Fresh {
    /// Tells the starter how storing the run went. If it was stored, counts it and
    /// returns the run and whom to tell how it ended.
    fn report(
        self,
        stored: Result<bool, DbErr>,
    ) -> Option<(store::NewRun, oneshot::Sender<RunDetails>)> {
        let ok = matches!(stored, Ok(true));
        if ok {
            metrics::counter!("switchyard_saga_runs_started_total", "saga" => self.new.saga)
                .increment(1);
        }
        // A starter that stopped waiting no longer listens; the run goes on.
        let _ = self.stored.send(stored);
        ok.then_some((self.new, self.ended))
    }

    /// Stores the run in a transaction of its own; `true` if it was stored.
    async fn store_alone(self, db: &DatabaseConnection) -> bool {
        let stored = store::insert_run(db, &self.new).await;
        self.report(stored).is_some()
    }
}

/// Drives run `id` of `saga` until it is finished, failed, or taken over, or `stop`
/// is cancelled: then, after the step in flight, it gives up the run's lease.
pub(super) async fn drive<I>(
    sagas: &Sagas,
    saga: &Saga<I>,
    id: Uuid,
    stop: CancellationToken,
    origin: Origin,
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
    if let Err(err) = driver.run(origin).instrument(span.clone()).await {
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

    /// The local steps from `position` on that can run as one unit of work: the
    /// longest stretch of local steps whose boundaries are on the runs' database (one
    /// transaction with the checkpoints) and whose timeouts add up to less than the
    /// lease, so that no other instance can take the run over meanwhile.
    fn together(&self, position: u32) -> Vec<LocalAt<'s, I>> {
        let databases = self.sagas.databases();
        let mut stretch = Vec::new();
        let mut time = Duration::ZERO;
        for (definition, position) in self.saga.steps[position as usize..].iter().zip(position..) {
            let StepKind::Local(step) = &definition.kind else {
                break;
            };
            let mut boundaries = step.boundaries().to_vec();
            boundaries.push(COORDINATOR_BOUNDARY);
            time += definition.policy.timeout;
            if time >= self.saga.lease
                || !matches!(databases.plan(&boundaries), Ok(CommitPlan::Local { .. }))
            {
                break;
            }
            stretch.push(LocalAt {
                position,
                definition,
                step: step.as_ref(),
            });
        }
        stretch
    }

    /// What the run does after the checkpoint of the steps before `next`.
    pub(super) fn then(&self, next: u32) -> store::Then {
        match self.saga.steps.get(next as usize).map(|s| &s.kind) {
            None => store::Then::Complete,
            Some(StepKind::Local(_)) => store::Then::Step,
            Some(StepKind::External(_)) => store::Then::Call,
        }
    }

    /// Drives the run. A fresh run is stored by the transaction of its first local
    /// steps (or on its own, before an external one).
    async fn run(&self, origin: Origin) -> Result<(), DbErr> {
        let (first, mut unstored) = match origin {
            Origin::Fresh(fresh) => (fresh.new.row(), Some(fresh)),
            Origin::Stored => match store::load(self.db(), self.id).await? {
                Some(row) => (row, None),
                None => return Ok(()),
            },
        };
        let fresh = unstored.is_some();
        let input: I = match serde_json::from_str(&first.input) {
            Ok(input) => input,
            Err(err) => {
                // A run this code cannot read (an older release's input): an operator
                // must decide.
                if let Some(fresh) = unstored.take()
                    && !fresh.store_alone(self.db()).await
                {
                    return Ok(());
                }
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
        // transaction before any effect, and after a local step, whose checkpoint
        // counted (under that guard) the first attempt of the call after it; and a
        // fresh run, as its start stores it. Before any other call the run is read
        // again and the lease renewed.
        let mut known = fresh.then_some(first);
        // Whether consecutive local steps may still run as one unit of work: not once
        // that failed, so that a failing step does not repeat those before it.
        let mut fold = true;
        // How the next step's attempts begin.
        let mut start = Start::Afresh;
        loop {
            if self.stop.is_cancelled() {
                if let Some(fresh) = unstored.take() {
                    fresh.store_alone(self.db()).await;
                }
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
            let next = decide::next(&row.status, &self.holder, steps);
            if let Next::Act { position } = next
                && fold
            {
                let together = self.together(position);
                let worth = together.len() > 1 || (unstored.is_some() && !together.is_empty());
                if worth {
                    let guard = match &unstored {
                        Some(fresh) => Guard::Insert(&fresh.new),
                        None => Guard::Renew(
                            Expect {
                                uncancelled: true,
                                ..self.expect(RunState::Running, position)
                            },
                            row.status.attempts + 1,
                        ),
                    };
                    let end = position + u32::try_from(together.len()).unwrap_or(0);
                    match self
                        .local_together(&together, guard, &input, &mut outputs, &row)
                        .await
                    {
                        Together::Done(records) => {
                            if let Some((new, ended)) =
                                unstored.take().and_then(|fresh| fresh.report(Ok(true)))
                                && end == steps
                                && let Some(details) = new.completed(records)
                            {
                                let _ = ended.send(details);
                            }
                            match self.then(end) {
                                store::Then::Complete => {
                                    self.finished(RunState::Completed);
                                    return Ok(());
                                }
                                store::Then::Step => {}
                                store::Then::Call => start = Start::Recorded,
                            }
                            known = Some(row.checkpointed(end));
                            continue;
                        }
                        Together::Lost => {
                            // A fresh run's key is taken: the run that holds it goes on.
                            if let Some(fresh) = unstored.take() {
                                fresh.report(Ok(false));
                            }
                            return Ok(());
                        }
                        Together::Failed(error) => {
                            fold = false;
                            if let Some(error) = error {
                                start = Start::Failed(error);
                            }
                        }
                    }
                }
            }
            if let Some(fresh) = unstored.take()
                && !fresh.store_alone(self.db()).await
            {
                return Ok(());
            }
            match next {
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
                        .forward(
                            definition,
                            position,
                            &input,
                            &mut outputs,
                            &row,
                            std::mem::replace(&mut start, Start::Afresh),
                        )
                        .await?;
                    match decide::after_act(&end, position, steps) {
                        AfterAct::Completed => {
                            self.finished(RunState::Completed);
                            return Ok(());
                        }
                        AfterAct::Continue => {
                            let next = position + 1;
                            let local = matches!(definition.kind, StepKind::Local(_));
                            match self.then(next) {
                                store::Then::Call if local => start = Start::Recorded,
                                store::Then::Call => continue,
                                _ => {}
                            }
                            known = Some(row.checkpointed(next));
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
