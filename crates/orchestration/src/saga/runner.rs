//! Driving runs: starting one under its idempotency key, running its steps forward
//! with retries and checkpoints, compensating backward, and the registry that lets
//! any instance's recovery drive a run of a saga it knows by name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use super::store::{self, Compensation, Expect, NewRun};
use super::{
    BoxFuture, ExternalStep, IdempotencyKey, LocalStep, RunDetails, RunState, Saga, SagaContext,
    SagaError, StepDefinition, StepError, StepKind,
};
use crate::COORDINATOR_BOUNDARY;
use crate::database::begin_write;
use crate::fabric::Fabric;
use crate::unit_of_work::UnitOfWork;

/// A local step with its output type hidden behind JSON.
pub(crate) trait ErasedLocal<I>: Send + Sync {
    fn boundaries(&self) -> &'static [&'static str];

    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<Value, StepError>>;

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        output: Value,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

/// An external step with its output type hidden behind JSON.
pub(crate) trait ErasedExternal<I>: Send + Sync {
    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Value, StepError>>;

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
        output: Option<Value>,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

pub(crate) struct Local<S>(pub(crate) S);
pub(crate) struct External<S>(pub(crate) S);

fn to_json<T: Serialize>(output: &T) -> Result<Value, StepError> {
    serde_json::to_value(output)
        .map_err(|err| StepError::permanent(format!("the step's output does not serialise: {err}")))
}

fn from_json<T: DeserializeOwned>(output: Value) -> Result<T, StepError> {
    serde_json::from_value(output).map_err(|err| {
        StepError::permanent(format!(
            "the step's checkpointed output does not parse: {err}"
        ))
    })
}

impl<I: Sync, S: LocalStep<I>> ErasedLocal<I> for Local<S> {
    fn boundaries(&self) -> &'static [&'static str] {
        S::BOUNDARIES
    }

    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move { to_json(&self.0.act(run, uow).await?) })
    }

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        output: Value,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { self.0.compensate(run, from_json(output)?, uow).await })
    }
}

impl<I: Sync, S: ExternalStep<I>> ErasedExternal<I> for External<S> {
    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move { to_json(&self.0.act(run, key).await?) })
    }

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
        output: Option<Value>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let output = output.map(from_json).transpose()?;
            self.0.compensate(run, key, output).await
        })
    }
}

/// A registered saga with its input type hidden: what recovery drives by name.
pub(crate) trait Driven: Send + Sync {
    fn lease(&self) -> Duration;

    fn drive(
        &self,
        fabric: Fabric,
        run_id: Uuid,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

impl<I> Driven for Arc<Saga<I>>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn lease(&self) -> Duration {
        self.lease
    }

    fn drive(
        &self,
        fabric: Fabric,
        run_id: Uuid,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let saga = Arc::clone(self);
        Box::pin(async move { drive(&fabric, &saga, run_id, stop, None).await })
    }
}

/// The sagas registered on a fabric, by name.
#[derive(Default)]
pub(crate) struct Registry {
    sagas: HashMap<&'static str, Arc<dyn Driven>>,
}

impl Registry {
    /// Adds `saga`; `false` if the name is taken.
    pub(crate) fn add(&mut self, name: &'static str, saga: Arc<dyn Driven>) -> bool {
        if self.sagas.contains_key(name) {
            return false;
        }
        self.sagas.insert(name, saga);
        true
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn Driven>> {
        self.sagas.get(name).cloned()
    }

    /// The longest lease of any registered saga: how long recovery claims a run for
    /// until its driver renews the lease.
    pub(crate) fn longest_lease(&self) -> Duration {
        self.sagas
            .values()
            .map(|saga| saga.lease())
            .max()
            .unwrap_or_default()
    }

    /// Every registered saga's name, sorted.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.sagas.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sagas", &self.names())
            .finish()
    }
}

/// The runs this process is driving, and how they are told to stop.
#[derive(Debug, Default)]
pub(crate) struct Drivers {
    tasks: TaskTracker,
    stop: std::sync::Mutex<CancellationToken>,
}

impl Drivers {
    /// Drives a run on its own task, tracked until it ends; `drive` gets the token
    /// that tells it to stop.
    pub(crate) fn spawn(
        &self,
        drive: impl FnOnce(CancellationToken) -> BoxFuture<'static, ()>,
    ) -> JoinHandle<()> {
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.tasks.spawn(drive(stop))
    }

    /// Tells every driver to stop and waits for them: each finishes the step in
    /// flight (bounded by its timeout), then gives up its run's lease so any instance
    /// resumes it at once. Runs started afterwards are driven as usual.
    pub(crate) async fn stop(&self) {
        let stop = std::mem::take(
            &mut *self
                .stop
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}

/// The database holding the runs: the `orchestration` boundary's.
pub(super) fn run_store(fabric: &Fabric) -> Result<RunStore<'_>, SagaError> {
    let (_, index) = fabric
        .boundary(COORDINATOR_BOUNDARY)
        .ok_or(SagaError::NoRunStore)?;
    let (id, connection) = fabric.database(index);
    Ok(RunStore { id, connection })
}

/// The connection to the runs' database, and its name for errors.
#[derive(Clone, Copy)]
pub(super) struct RunStore<'f> {
    id: &'f crate::DatabaseId,
    pub(super) connection: &'f DatabaseConnection,
}

impl RunStore<'_> {
    pub(super) fn error(&self, source: DbErr) -> SagaError {
        SagaError::Database {
            database: self.id.clone(),
            source,
        }
    }

    /// Reading run `run_id`, which exists, failed.
    fn unread(&self, run_id: Uuid, source: DbErr) -> SagaError {
        SagaError::Unread {
            run_id,
            database: self.id.clone(),
            source,
        }
    }
}

/// This process's name as the holder of a run's lease.
pub(super) fn holder(fabric: &Fabric) -> String {
    format!("{}:{}", fabric.instance(), std::process::id())
}

pub(super) async fn start<I>(
    fabric: &Fabric,
    saga: &Arc<Saga<I>>,
    key: &str,
    input: &I,
    wait: Duration,
) -> Result<RunDetails, SagaError>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    super::check_key(key)?;
    let input = serde_json::to_string(input).map_err(|source| SagaError::Input {
        saga: saga.name,
        source,
    })?;
    let store = run_store(fabric)?;
    let db = store.connection;
    let error = |source| store.error(source);
    let holder = holder(fabric);
    // Registered before it holds a run, so that no recovery takes this instance for
    // gone (see `store::claim_expired`).
    if let Some(registration) = fabric.registration() {
        registration.ensure_registered().await;
    }
    let id = Uuid::now_v7();
    let new = NewRun {
        id,
        saga: saga.name,
        key,
        input: &input,
        holder: &holder,
        lease: saga.lease,
        now: Utc::now(),
    };
    if store::insert_run(db, &new).await.map_err(&error)? {
        metrics::counter!("switchyard_saga_runs_started_total", "saga" => saga.name).increment(1);
        // Driven on its own task: the run goes on if the caller stops waiting.
        let (driver_fabric, saga, fresh) = (fabric.clone(), Arc::clone(saga), new.row());
        // Within the caller's span (an HTTP request's, say), so that the run's spans
        // belong to the caller's trace.
        let caller = tracing::Span::current();
        let driving = fabric.saga_drivers().spawn(move |stop| {
            Box::pin(
                async move { drive(&driver_fabric, &saga, id, stop, Some(fresh)).await }
                    .instrument(caller),
            )
        });
        // Dropping the handle on timeout detaches the task; it is not cancelled.
        let _ = tokio::time::timeout(wait, driving).await;
        return store::details(db, id)
            .await
            .map_err(|source| store.unread(id, source))?
            .ok_or(SagaError::UnknownRun(id));
    }
    let existing = store::find_by_key(db, saga.name, key)
        .await
        .map_err(&error)?
        .ok_or_else(|| {
            SagaError::Corrupt(format!(
                "key `{key}` of saga `{}` is taken but its run is gone",
                saga.name
            ))
        })?;
    if existing.input != input {
        return Err(SagaError::KeyConflict {
            saga: saga.name,
            key: key.to_owned(),
            run_id: existing.status.id,
        });
    }
    wait_for(fabric, existing.status.id, wait).await
}

/// Polls run `id` until it is no longer running or compensating, or `wait` passed.
pub(super) async fn wait_for(
    fabric: &Fabric,
    id: Uuid,
    wait: Duration,
) -> Result<RunDetails, SagaError> {
    let store = run_store(fabric)?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        let details = store::details(store.connection, id)
            .await
            .map_err(|source| store.unread(id, source))?
            .ok_or(SagaError::UnknownRun(id))?;
        let now = tokio::time::Instant::now();
        if !details.run.state.is_active() || now >= deadline {
            return Ok(details);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// How one step (forward or backward) ended.
enum StepEnd {
    /// It took effect and its checkpoint committed.
    Done,
    /// It refused (forward only).
    Rejected(Value),
    /// It failed for good: the error, and whether an external call may have taken
    /// effect.
    Failed { error: String, maybe_done: bool },
    /// Another instance took the run over, or this one is shutting down.
    Stopped,
}

/// Drives run `id` of `saga` until it is finished, failed, or taken over, or `stop`
/// is cancelled: then, after the step in flight, it gives up the run's lease. `fresh`
/// is the run as its start just inserted it, if it was.
async fn drive<I>(
    fabric: &Fabric,
    saga: &Saga<I>,
    id: Uuid,
    stop: CancellationToken,
    fresh: Option<store::RunRow>,
) where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let span = tracing::info_span!("saga", saga = saga.name, run_id = %id);
    let driver = match Driver::new(fabric, saga, id, stop) {
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
        match store::release(driver.db, id, &driver.holder, Utc::now()).await {
            Ok(true) => tracing::info!(parent: &span, "saga run handed over at shutdown"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(parent: &span, error = %err, "cannot hand the saga run over; its lease will run out");
            }
        }
    }
}

struct Driver<'s, I> {
    fabric: &'s Fabric,
    db: &'s DatabaseConnection,
    saga: &'s Saga<I>,
    id: Uuid,
    holder: String,
    /// Cancelled when this process stops driving runs.
    stop: CancellationToken,
}

impl<'s, I> Driver<'s, I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn new(
        fabric: &'s Fabric,
        saga: &'s Saga<I>,
        id: Uuid,
        stop: CancellationToken,
    ) -> Result<Self, SagaError> {
        Ok(Self {
            fabric,
            db: run_store(fabric)?.connection,
            saga,
            id,
            holder: holder(fabric),
            stop,
        })
    }

    /// Waits out a retry's backoff; `false` if told to stop meanwhile.
    async fn back_off(&self, pause: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = self.stop.cancelled() => false,
        }
    }

    fn db(&self) -> &DatabaseConnection {
        self.db
    }

    fn expect(&self, state: RunState, step: u32) -> Expect<'_> {
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
                        Utc::now(),
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
            let run = &row.status;
            if run.lease_holder.as_deref() != Some(self.holder.as_str()) {
                return Ok(());
            }
            let step = run.current_step;
            let now = Utc::now();
            match run.state {
                RunState::Running if run.cancel_requested => {
                    let why = Compensation {
                        undo: step,
                        rejection: None,
                        error: Some("cancelled by an operator"),
                        unknown: None,
                    };
                    if !store::begin_compensating(
                        self.db(),
                        self.expect(RunState::Running, step),
                        &why,
                        now,
                    )
                    .await?
                    {
                        return Ok(());
                    }
                }
                RunState::Running if step >= steps => {
                    store::finish(
                        self.db(),
                        self.expect(RunState::Running, step),
                        RunState::Completed,
                        None,
                        now,
                    )
                    .await?;
                    self.finished(RunState::Completed);
                    return Ok(());
                }
                RunState::Running => {
                    let definition = &self.saga.steps[step as usize];
                    let end = self
                        .forward(definition, step, &input, &mut outputs, &row)
                        .await?;
                    let why = match &end {
                        // The last step's checkpoint completed the run.
                        StepEnd::Done if step + 1 == steps => {
                            self.finished(RunState::Completed);
                            return Ok(());
                        }
                        StepEnd::Done => {
                            if local_next(step as usize + 1) {
                                known = Some(row.checkpointed());
                            }
                            continue;
                        }
                        // Read the run again: it was taken over or cancelled, or this
                        // driver is told to stop.
                        StepEnd::Stopped => continue,
                        StepEnd::Rejected(rejection) => Compensation {
                            undo: step,
                            rejection: Some(rejection),
                            error: None,
                            unknown: None,
                        },
                        StepEnd::Failed { error, maybe_done } => Compensation {
                            undo: step + u32::from(*maybe_done),
                            rejection: None,
                            error: Some(error),
                            unknown: maybe_done.then(|| {
                                (
                                    step,
                                    definition.name,
                                    definition.policy.max_attempts,
                                    row.step_started_at.unwrap_or(now),
                                )
                            }),
                        },
                    };
                    if !store::begin_compensating(
                        self.db(),
                        self.expect(RunState::Running, step),
                        &why,
                        Utc::now(),
                    )
                    .await?
                    {
                        return Ok(());
                    }
                }
                RunState::Compensating if step == 0 => {
                    let state = if run.cancel_requested {
                        RunState::Cancelled
                    } else {
                        RunState::Compensated
                    };
                    store::finish(
                        self.db(),
                        self.expect(RunState::Compensating, 0),
                        state,
                        None,
                        now,
                    )
                    .await?;
                    self.finished(state);
                    return Ok(());
                }
                RunState::Compensating => {
                    let position = step - 1;
                    let definition = &self.saga.steps[position as usize];
                    match self
                        .backward(definition, position, &input, &outputs, &row)
                        .await?
                    {
                        StepEnd::Done => {}
                        StepEnd::Stopped => return Ok(()),
                        StepEnd::Failed { error, .. } => {
                            self.fail(step, &error).await?;
                            return Ok(());
                        }
                        // `backward` reports a refusal as a failure.
                        StepEnd::Rejected(refusal) => {
                            self.fail(step, &format!("the compensation refused: {refusal}"))
                                .await?;
                            return Ok(());
                        }
                    }
                }
                RunState::Completed
                | RunState::Compensated
                | RunState::Failed
                | RunState::Cancelled => return Ok(()),
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
            Utc::now(),
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

    /// Makes attempts at step `definition` (forward, or its compensation if
    /// `compensating`): calls `once` with each attempt's number, counting on from the
    /// `attempt`s already recorded, until one succeeds, the run is lost or stopped, or
    /// the step's retry policy gives up. Each attempt runs under the step's timeout;
    /// an external step's lease is renewed before each call. `Ok(Err(end))` says how
    /// it ended without succeeding.
    async fn attempts<'a, T>(
        &self,
        definition: &StepDefinition<I>,
        expect: Expect<'_>,
        mut attempt: u32,
        compensating: bool,
        once: impl Fn(u32) -> BoxFuture<'a, Result<Option<T>, StepError>>,
    ) -> Result<Result<T, StepEnd>, DbErr> {
        let policy = definition.policy;
        let name = definition.name;
        let external = matches!(definition.kind, StepKind::External(_));
        let what = if compensating {
            "compensating step"
        } else {
            "step"
        };
        loop {
            attempt += 1;
            if external
                && !store::renew(self.db(), expect, attempt, Utc::now(), self.saga.lease).await?
            {
                return Ok(Err(StepEnd::Stopped));
            }
            let span = if compensating {
                tracing::info_span!("saga_compensation", step = name, attempt)
            } else {
                tracing::info_span!("saga_step", step = name, attempt)
            };
            let error = match tokio::time::timeout(policy.timeout, once(attempt))
                .instrument(span)
                .await
            {
                Ok(Ok(Some(done))) => return Ok(Ok(done)),
                Ok(Ok(None)) => return Ok(Err(StepEnd::Stopped)),
                Ok(Err(StepError::Transient(error))) => error,
                Ok(Err(StepError::Rejected(rejection))) if !compensating => {
                    tracing::info!(step = name, %rejection, "step refused; compensating");
                    return Ok(Err(StepEnd::Rejected(rejection)));
                }
                // A compensation's refusal is as final as a permanent error.
                Ok(Err(error)) => {
                    return Ok(Err(StepEnd::Failed {
                        error: format!("{what} `{name}`: {error}"),
                        maybe_done: external && !compensating,
                    }));
                }
                Err(_) => format!("timed out after {:?}", policy.timeout),
            };
            let error = format!("{what} `{name}` attempt {attempt}: {error}");
            tracing::warn!(%error, "saga {what} failed");
            if attempt >= policy.max_attempts {
                // An external call that never answered may have taken effect.
                return Ok(Err(StepEnd::Failed {
                    error,
                    maybe_done: external && !compensating,
                }));
            }
            if !store::record_failure(self.db(), expect, attempt, &error, Utc::now()).await?
                || !self.back_off(policy.backoff(attempt)).await
            {
                return Ok(Err(StepEnd::Stopped));
            }
        }
    }

    /// Runs step `position` forward until it takes effect, refuses, or fails for good.
    async fn forward(
        &self,
        definition: &StepDefinition<I>,
        position: u32,
        input: &I,
        outputs: &mut [(&'static str, Option<Value>)],
        row: &store::RunRow,
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
                false,
                move |attempt| {
                    Box::pin(async move {
                        let context = SagaContext {
                            run_id: self.id,
                            input,
                            outputs: earlier,
                            attempt,
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

    /// One attempt of a local step: the guard, the step and the checkpoint in one
    /// unit of work. `Ok(None)` if the lease was lost (nothing committed).
    async fn local_forward(
        &self,
        step: &dyn ErasedLocal<I>,
        context: &SagaContext<'_, I>,
        expect: Expect<'_>,
        position: u32,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<Option<Value>, StepError> {
        let (attempt, name) = (context.attempt, self.saga.steps[position as usize].name);
        let lease = self.saga.lease;
        let id = self.id;
        let last = position as usize + 1 == self.saga.steps.len();
        let mut lost = false;
        let run = self
            .fabric
            .unit_of_work(self.saga.name)
            .run(async |uow: &mut UnitOfWork<StepError>| {
                let held = uow
                    .step(COORDINATOR_BOUNDARY, "saga_lease", async |tx| {
                        store::renew(tx, expect, attempt, Utc::now(), lease).await
                    })
                    .await?;
                if !held {
                    lost = true;
                    return Err(StepError::transient("the run's lease was lost"));
                }
                let output = step.act(context, uow).await?;
                uow.step(COORDINATOR_BOUNDARY, "saga_checkpoint", async |tx| {
                    store::checkpoint_done(
                        tx,
                        id,
                        (position, name),
                        &output,
                        attempt,
                        started_at,
                        last,
                        Utc::now(),
                    )
                    .await
                })
                .await?;
                crate::fault::point(&format!("saga.{name}.before_commit"));
                Ok(output)
            })
            .await;
        match run {
            Ok(done) => {
                crate::fault::point(&format!("saga.{name}.after_commit"));
                Ok(Some(done.value))
            }
            Err(_) if lost => Ok(None),
            Err(err) => Err(err),
        }
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
        let tx = begin_write(self.db()).await?;
        if !store::renew(&tx, expect, attempt, Utc::now(), self.saga.lease).await? {
            return Ok(None);
        }
        store::checkpoint_done(
            &tx,
            self.id,
            (position, name),
            &output,
            attempt,
            started_at,
            position as usize + 1 == self.saga.steps.len(),
            Utc::now(),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(output))
    }

    /// Compensates step `position` until it is undone or fails for good.
    async fn backward(
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
                true,
                move |attempt| {
                    Box::pin(async move {
                        let context = SagaContext {
                            run_id: self.id,
                            input,
                            outputs,
                            attempt,
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
        let tx = begin_write(self.db()).await?;
        if !store::renew(&tx, expect, context.attempt, Utc::now(), self.saga.lease).await? {
            return Ok(None);
        }
        store::checkpoint_compensated(&tx, self.id, position, Utc::now()).await?;
        tx.commit().await?;
        Ok(Some(()))
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
        let attempt = context.attempt;
        let lease = self.saga.lease;
        let id = self.id;
        let mut lost = false;
        let run = self
            .fabric
            .unit_of_work(self.saga.name)
            .run(async |uow: &mut UnitOfWork<StepError>| {
                let held = uow
                    .step(COORDINATOR_BOUNDARY, "saga_lease", async |tx| {
                        store::renew(tx, expect, attempt, Utc::now(), lease).await
                    })
                    .await?;
                if !held {
                    lost = true;
                    return Err(StepError::transient("the run's lease was lost"));
                }
                if let Some(output) = output {
                    step.compensate(context, output, uow).await?;
                }
                uow.step(COORDINATOR_BOUNDARY, "saga_checkpoint", async |tx| {
                    store::checkpoint_compensated(tx, id, position, Utc::now()).await
                })
                .await?;
                Ok(())
            })
            .await;
        match run {
            Ok(_) => Ok(Some(())),
            Err(_) if lost => Ok(None),
            Err(err) => Err(err),
        }
    }
}
