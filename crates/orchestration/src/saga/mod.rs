//! Durable sagas: an ordered list of steps, each with an action and a compensation,
//! whose runs survive crashes.
//!
//! A run is a row in `orchestration.saga_runs`: its input, where it is, and which
//! instance drives it under a lease. Each step that takes effect leaves a checkpoint
//! in `orchestration.saga_steps` with its output:
//!
//! - a [`LocalStep`] runs in a unit of work that also writes the checkpoint, so the
//!   step's effect and the checkpoint commit together (one transaction, or two-phase
//!   commit): the effect happens exactly once, even if two instances race for it;
//! - an [`ExternalStep`] calls outside the process with a deterministic
//!   [`IdempotencyKey`]; its output is checkpointed when the call returns, and a
//!   repeated call after a crash passes the same key.
//!
//! A business refusal ([`StepError::Rejected`]) or a step that keeps failing makes the
//! run compensate the steps that took effect, in reverse order. A compensation that
//! keeps failing leaves the run `failed`, with the error, until an operator retries or
//! cancels it. The [`SagaRecovery`] worker of any instance resumes a run whose lease
//! ran out (its driver crashed) from the last checkpoint.

mod admin;
mod recovery;
mod runner;
mod schema;
mod store;

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::database::DatabaseId;
use crate::error::UnitOfWorkError;
use crate::fabric::Fabric;
use crate::unit_of_work::UnitOfWork;

pub use admin::RunFilter;
pub(crate) use admin::{
    cancel as admin_cancel, list as admin_list, retry as admin_retry, show as admin_show,
};
pub use recovery::{SagaRecovery, SagaRecoveryOptions};
pub(crate) use runner::{Driven, Drivers, Registry};
pub(crate) use schema::SagaTables;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest idempotency key a run accepts.
pub const MAX_KEY_LEN: usize = 255;

/// How a step's transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the run compensates (for an action)
    /// or fails (for a compensation).
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles with each attempt up to
    /// `backoff_max`, and each delay is jittered down by up to half.
    pub backoff_initial: Duration,
    /// The longest delay between attempts.
    pub backoff_max: Duration,
    /// How long one attempt may take; a slower attempt counts as a transient failure
    /// (a local step's transaction is rolled back).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (from 1), jittered into
    /// `[delay / 2, delay]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let delay = self
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        delay.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Why a step's action or compensation did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// A business refusal (out of stock, payment declined): not retried; the run
    /// compensates and keeps the refusal, as JSON, as its outcome. Only an action
    /// can refuse; a compensation that returns this counts as permanent.
    #[error("rejected: {0}")]
    Rejected(Value),
    /// Worth retrying (a database or network hiccup): retried by the step's
    /// [`RetryPolicy`].
    #[error("{0}")]
    Transient(String),
    /// Not worth retrying (a bug, a request the other side will never accept).
    #[error("{0}")]
    Permanent(String),
}

impl StepError {
    /// A business refusal carrying `reason` (serialised to JSON).
    #[must_use]
    pub fn reject<R: Serialize>(reason: &R) -> Self {
        match serde_json::to_value(reason) {
            Ok(value) => Self::Rejected(value),
            Err(err) => Self::Permanent(format!("the rejection does not serialise: {err}")),
        }
    }

    /// A failure worth retrying.
    #[must_use]
    pub fn transient(error: impl fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }

    /// A failure not worth retrying.
    #[must_use]
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self::Permanent(error.to_string())
    }
}

impl From<UnitOfWorkError> for StepError {
    fn from(err: UnitOfWorkError) -> Self {
        match err {
            // The topology or the code is wrong: retrying changes nothing.
            UnitOfWorkError::UnknownBoundary { .. }
            | UnitOfWorkError::NotAtomic { .. }
            | UnitOfWorkError::NoCoordinator
            | UnitOfWorkError::Serialize { .. } => Self::permanent(err),
            _ => Self::transient(err),
        }
    }
}

impl From<sea_orm::DbErr> for StepError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::transient(err)
    }
}

impl SagaError {
    /// Whether the runs' database could not be used right now (see
    /// [`crate::is_unavailable`]): asking again later may succeed.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unread { source, .. } | Self::Database { source, .. } => {
                crate::is_unavailable(source)
            }
            _ => false,
        }
    }
}

/// The idempotency keys of one step of one run: the same on every attempt and after
/// any crash, so the other side can recognise a repeated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    run_id: Uuid,
    step: &'static str,
}

impl IdempotencyKey {
    /// The key of the step's action: `<run id>/<step>`.
    #[must_use]
    pub fn action(&self) -> String {
        format!("{}/{}", self.run_id, self.step)
    }

    /// The key of the step's compensation: `<run id>/<step>/compensate`.
    #[must_use]
    pub fn compensation(&self) -> String {
        format!("{}/{}/compensate", self.run_id, self.step)
    }
}

/// What a step sees of its run: the id, the input and the outputs of the steps
/// before it.
#[derive(Debug)]
pub struct SagaContext<'r, I> {
    run_id: Uuid,
    input: &'r I,
    /// Every step's name with its checkpointed output, if it has one.
    outputs: &'r [(&'static str, Option<Value>)],
    attempt: u32,
}

impl<I> SagaContext<'_, I> {
    /// The run's id (a UUIDv7).
    #[must_use]
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The run's input.
    #[must_use]
    pub fn input(&self) -> &I {
        self.input
    }

    /// This attempt's number, from 1.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The checkpointed output of step `step`.
    ///
    /// # Errors
    /// [`StepError::Permanent`] if the step has no output (it has not taken effect, or
    /// its outcome is unknown) or the output is not a `T`.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let value = self
            .outputs
            .iter()
            .find(|(name, _)| *name == step)
            .and_then(|(_, output)| output.as_ref())
            .ok_or_else(|| StepError::permanent(format!("step `{step}` has no output")))?;
        serde_json::from_value(value.clone()).map_err(|err| {
            StepError::permanent(format!("the output of step `{step}` does not parse: {err}"))
        })
    }
}

/// A step that runs in a unit of work on the boundaries it names. Its effect and the
/// run's checkpoint commit together: exactly once.
pub trait LocalStep<I>: Send + Sync + 'static {
    /// What the action returns; checkpointed as JSON and given to the compensation.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The boundaries the step touches. With `orchestration` (the checkpoint) they
    /// must be able to commit together; [`Fabric::register_saga`] checks.
    const BOUNDARIES: &'static [&'static str];

    /// Does the step's work in `uow`.
    fn act(
        &self,
        run: &SagaContext<'_, I>,
        uow: &mut UnitOfWork<StepError>,
    ) -> impl Future<Output = Result<Self::Output, StepError>> + Send;

    /// Undoes what `act` did, given its output. The default does nothing: for a step
    /// that is never undone (the last one) or needs no undoing.
    fn compensate(
        &self,
        run: &SagaContext<'_, I>,
        output: Self::Output,
        uow: &mut UnitOfWork<StepError>,
    ) -> impl Future<Output = Result<(), StepError>> + Send {
        let _ = (run, output, uow);
        async { Ok(()) }
    }
}

/// A step that calls outside the process (a payment gateway). It passes the
/// [`IdempotencyKey`] on, so a call repeated after a crash or a lost response takes
/// effect once on the other side.
pub trait ExternalStep<I>: Send + Sync + 'static {
    /// What the call returns; checkpointed as JSON and given to the compensation.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Makes the call, passing `key.action()`.
    fn act(
        &self,
        run: &SagaContext<'_, I>,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Self::Output, StepError>> + Send;

    /// Undoes the call, passing `key.compensation()`. `output` is `None` when the call
    /// kept failing and its outcome is unknown: the compensation must then undo
    /// whatever `key.action()` may have done, and do nothing if it did nothing.
    fn compensate(
        &self,
        run: &SagaContext<'_, I>,
        key: &IdempotencyKey,
        output: Option<Self::Output>,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// A saga definition: a name and ordered steps. Register it with
/// [`Fabric::register_saga`] to start runs.
pub struct Saga<I> {
    name: &'static str,
    steps: Vec<StepDefinition<I>>,
    lease: Duration,
}

pub(crate) struct StepDefinition<I> {
    pub(crate) name: &'static str,
    pub(crate) policy: RetryPolicy,
    pub(crate) kind: StepKind<I>,
}

pub(crate) enum StepKind<I> {
    Local(Box<dyn runner::ErasedLocal<I>>),
    External(Box<dyn runner::ErasedExternal<I>>),
}

impl<I> fmt::Debug for Saga<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<&str> = self.steps.iter().map(|s| s.name).collect();
        f.debug_struct("Saga")
            .field("name", &self.name)
            .field("steps", &steps)
            .field("lease", &self.lease)
            .finish()
    }
}

impl<I> Saga<I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A saga called `name` with no steps yet. The name is stored with every run:
    /// keep it stable across releases. The lease is 60 s.
    #[must_use]
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            steps: Vec::new(),
            lease: Duration::from_secs(60),
        }
    }

    /// How long a run's driver holds it without a sign of life before another
    /// instance takes over. It is renewed at every attempt, so it must exceed every
    /// step's timeout plus its longest backoff.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Appends a local step called `name` with the default [`RetryPolicy`].
    #[must_use]
    pub fn local<S: LocalStep<I>>(self, name: &'static str, step: S) -> Self {
        self.push(name, StepKind::Local(Box::new(runner::Local(step))))
    }

    /// Appends an external step called `name` with the default [`RetryPolicy`].
    #[must_use]
    pub fn external<S: ExternalStep<I>>(self, name: &'static str, step: S) -> Self {
        self.push(name, StepKind::External(Box::new(runner::External(step))))
    }

    /// Sets the retry policy of the step added last (of its action and its
    /// compensation).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        if let Some(last) = self.steps.last_mut() {
            last.policy = policy;
        }
        self
    }

    fn push(mut self, name: &'static str, kind: StepKind<I>) -> Self {
        self.steps.push(StepDefinition {
            name,
            policy: RetryPolicy::default(),
            kind,
        });
        self
    }

    /// The saga's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Why the definition cannot run on `fabric`, if it cannot.
    pub(crate) fn check(&self, fabric: &Fabric) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("it has no steps".to_owned());
        }
        for (i, step) in self.steps.iter().enumerate() {
            if self.steps[..i].iter().any(|s| s.name == step.name) {
                return Err(format!("two steps are called `{}`", step.name));
            }
            let policy = step.policy;
            if policy.max_attempts == 0 {
                return Err(format!("step `{}` allows no attempt", step.name));
            }
            if self.lease <= policy.timeout + policy.backoff_max {
                return Err(format!(
                    "its lease ({:?}) must exceed step `{}`'s timeout plus its longest backoff ({:?})",
                    self.lease,
                    step.name,
                    policy.timeout + policy.backoff_max
                ));
            }
            if let StepKind::Local(local) = &step.kind {
                let mut boundaries = local.boundaries().to_vec();
                boundaries.push(crate::COORDINATOR_BOUNDARY);
                fabric.plan(&boundaries).map_err(|err| {
                    format!(
                        "step `{}` cannot commit with its checkpoint: {err}",
                        step.name
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its steps are running, forward.
    Running,
    /// A step refused or kept failing (or the run was cancelled); completed steps are
    /// being undone, last first.
    Compensating,
    /// Every step took effect. Final.
    Completed,
    /// Every step that took effect was undone. Final.
    Compensated,
    /// A compensation kept failing; the run waits for an operator (retry or cancel).
    Failed,
    /// Cancelled by an operator: compensated, or abandoned after failing. Final.
    Cancelled,
}

impl RunState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Compensating,
        Self::Completed,
        Self::Compensated,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The state as stored and printed.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or typed state.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether a driver is (or should be) working on the run.
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    /// The run's id (a UUIDv7).
    pub id: Uuid,
    /// The saga's name.
    pub saga: String,
    /// The key it was started with.
    pub idempotency_key: String,
    /// Where it is.
    pub state: RunState,
    /// Running: the steps that took effect. Compensating: the steps still to undo.
    pub current_step: u32,
    /// Failed attempts of the current step or compensation.
    pub attempts: u32,
    /// An operator asked to cancel it.
    pub cancel_requested: bool,
    /// The instance driving it, while one does.
    pub lease_holder: Option<String>,
    /// When another instance may take it over.
    pub lease_expires_at: DateTime<Utc>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The business refusal that made it compensate, if one did.
    pub rejection: Option<Value>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a final state (or `failed`).
    pub finished_at: Option<DateTime<Utc>>,
}

/// Whether a step's effect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// It took effect; its output is checkpointed.
    Done,
    /// An external call kept failing: it may or may not have taken effect.
    Unknown,
    /// Its compensation ran.
    Compensated,
}

impl StepState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Unknown => "unknown",
            Self::Compensated => "compensated",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Done, Self::Unknown, Self::Compensated]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checkpoint of one step that took effect (or may have).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The step's index in its saga.
    pub position: u32,
    /// Its name.
    pub name: String,
    /// Whether its effect stands.
    pub state: StepState,
    /// Its output.
    pub output: Option<Value>,
    /// The attempts it took.
    pub attempts: u32,
    /// When its first attempt began.
    pub started_at: DateTime<Utc>,
    /// When it took effect.
    pub completed_at: Option<DateTime<Utc>>,
    /// When its compensation ran.
    pub compensated_at: Option<DateTime<Utc>>,
}

/// A run with its input and its steps' checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetails {
    /// The run.
    #[serde(flatten)]
    pub run: RunStatus,
    /// Its input.
    pub input: Value,
    /// Its checkpoints, by position.
    pub steps: Vec<StepRecord>,
}

impl RunDetails {
    /// The output of the run's last step, once the run completed.
    #[must_use]
    pub fn output(&self) -> Option<&Value> {
        if self.run.state != RunState::Completed {
            return None;
        }
        self.steps.last().and_then(|step| step.output.as_ref())
    }
}

/// Starting, finding or changing a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// The key was used before with a different input.
    #[error(
        "idempotency key `{key}` of saga `{saga}` was used for run {run_id} with a different input"
    )]
    KeyConflict {
        /// The saga.
        saga: &'static str,
        /// The key.
        key: String,
        /// The run that holds it.
        run_id: Uuid,
    },
    /// The key is empty, too long, or holds control characters.
    #[error("invalid idempotency key: {0}")]
    InvalidKey(&'static str),
    /// The input does not serialise to JSON.
    #[error("the input of saga `{saga}` does not serialise: {source}")]
    Input {
        /// The saga.
        saga: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },
    /// No run has this id.
    #[error("no saga run with id {0}")]
    UnknownRun(Uuid),
    /// The run is in a state where the operation makes no sense.
    #[error("run {id} is {state}: cannot {operation} it")]
    InvalidState {
        /// The run.
        id: Uuid,
        /// Its state.
        state: RunState,
        /// What was asked.
        operation: &'static str,
    },
    /// The fabric has no `orchestration` boundary, which holds the runs.
    #[error("saga runs live in the `orchestration` boundary, which is not registered")]
    NoRunStore,
    /// A stored run breaks the engine's invariants.
    #[error("corrupt saga run: {0}")]
    Corrupt(String),
    /// The run started (or was found by its key), but its state could not be read
    /// back: it goes on, and can be asked for by its id.
    #[error("saga run {run_id} started, but reading it on {database} failed: {source}")]
    Unread {
        /// The run.
        run_id: Uuid,
        /// The database.
        database: DatabaseId,
        /// Its error.
        source: sea_orm::DbErr,
    },
    /// The database holding the runs failed.
    #[error("saga runs on {database}: {source}")]
    Database {
        /// The database.
        database: DatabaseId,
        /// Its error.
        source: sea_orm::DbErr,
    },
}

/// A saga registered on a fabric: starts its runs. Cheap to clone.
pub struct SagaHandle<I> {
    fabric: Fabric,
    saga: Arc<Saga<I>>,
    _input: PhantomData<fn(I)>,
}

impl<I> Clone for SagaHandle<I> {
    fn clone(&self) -> Self {
        Self {
            fabric: self.fabric.clone(),
            saga: Arc::clone(&self.saga),
            _input: PhantomData,
        }
    }
}

impl<I> fmt::Debug for SagaHandle<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaHandle")
            .field("saga", &self.saga)
            .finish_non_exhaustive()
    }
}

impl<I> SagaHandle<I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn new(fabric: Fabric, saga: Arc<Saga<I>>) -> Self {
        Self {
            fabric,
            saga,
            _input: PhantomData,
        }
    }

    /// Starts a run of the saga with `input` under `key`, drives it in this process,
    /// and waits up to `wait` for it to finish; returns the run as it is then.
    ///
    /// A key used before returns that run (finished or not) and repeats no effect; if
    /// it is still unfinished, this waits for it too. Concurrent starts with one key
    /// make one run. The run goes on if the caller stops waiting (or is dropped).
    ///
    /// # Errors
    /// [`SagaError::KeyConflict`] for a key used with a different input,
    /// [`SagaError::InvalidKey`], or a database failure.
    pub async fn start(
        &self,
        key: &str,
        input: &I,
        wait: Duration,
    ) -> Result<RunDetails, SagaError> {
        runner::start(&self.fabric, &self.saga, key, input, wait).await
    }

    /// The run with this id, with its steps.
    ///
    /// # Errors
    /// [`SagaError::UnknownRun`], or a database failure.
    pub async fn run(&self, id: Uuid) -> Result<RunDetails, SagaError> {
        self.fabric.saga_run(id).await
    }

    /// Waits up to `wait` for run `id` to finish; returns it as it is then.
    ///
    /// # Errors
    /// [`SagaError::UnknownRun`], or a database failure.
    pub async fn wait(&self, id: Uuid, wait: Duration) -> Result<RunDetails, SagaError> {
        runner::wait_for(&self.fabric, id, wait).await
    }
}

/// Checks an idempotency key: 1 to [`MAX_KEY_LEN`] bytes, no control characters.
///
/// # Errors
/// [`SagaError::InvalidKey`] saying what is wrong.
pub fn check_key(key: &str) -> Result<(), SagaError> {
    if key.is_empty() {
        return Err(SagaError::InvalidKey("it is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(SagaError::InvalidKey("it is longer than 255 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(SagaError::InvalidKey("it holds control characters"));
    }
    Ok(())
}
