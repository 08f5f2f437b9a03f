//! A saga's definition: its steps (local in a unit of work, or external calls), their
//! typed names, retry policies and idempotency keys, what a step sees of its run, and
//! the checks made when the saga is registered.

use chrono::{DateTime, Utc};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::erased;
use crate::backoff::Backoff;
use crate::databases::Databases;
use crate::error::UnitOfWorkError;
use crate::failure::{Classify, Failure};
use crate::schema::COORDINATOR_BOUNDARY;
use crate::unit_of_work::UnitOfWork;

/// The longest idempotency key a run accepts.
pub const MAX_KEY_LEN: usize = 255;

/// How a step's transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the run compensates (for an action)
    /// or fails (for a compensation).
    pub max_attempts: u32,
    /// The delay before each further attempt; each delay is jittered down by up to
    /// half.
    pub backoff: Backoff,
    /// How long one attempt may take; a slower attempt counts as a transient failure
    /// (a local step's transaction is rolled back).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            timeout: Duration::from_secs(10),
        }
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

impl StepError {
    /// `error` as a transient or permanent failure, as it classifies itself.
    #[must_use]
    pub fn classified(error: &(impl Classify + fmt::Display)) -> Self {
        match error.failure() {
            Failure::Transient => Self::transient(error),
            Failure::Permanent => Self::permanent(error),
        }
    }
}

impl From<UnitOfWorkError> for StepError {
    fn from(err: UnitOfWorkError) -> Self {
        Self::classified(&err)
    }
}

impl From<sea_orm::DbErr> for StepError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::classified(&err)
    }
}

/// The idempotency keys of one step of one run: the same on every attempt and after
/// any crash, so the other side can recognise a repeated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub(super) run_id: Uuid,
    pub(super) step: &'static str,
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
    pub(super) run_id: Uuid,
    pub(super) input: &'r I,
    /// Every step's name with its checkpointed output, if it has one.
    pub(super) outputs: &'r [(&'static str, Option<Value>)],
    pub(super) attempt: u32,
    /// When this attempt began, by the fabric's clock.
    pub(super) now: DateTime<Utc>,
}

impl<I> SagaContext<'_, I> {
    /// When this attempt began, by the fabric's clock (the system clock, or a test's
    /// [`Clock::manual`](crate::clock::Clock::manual)): pass it to domain calls instead
    /// of reading the system time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

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

    /// The checkpointed output of an earlier step, named with its typed name.
    ///
    /// # Errors
    /// [`StepError::Permanent`] if the step has no output (it is not in the saga, has
    /// not taken effect, or its outcome is unknown) or the output does not parse.
    pub fn output<T: DeserializeOwned>(&self, step: StepName<T>) -> Result<T, StepError> {
        let step = step.name();
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

/// A step's name, typed by its output. Declare it once, as a constant; name the step
/// with it and read its output with it in later steps, so that neither the name nor
/// the output's type can be mistyped:
///
/// ```
/// # use orchestration::saga::StepName;
/// # #[derive(serde::Deserialize)] struct Held;
/// const HOLD_STOCK: StepName<Held> = StepName::new("hold_stock");
/// // Saga::new("place_order").local(HOLD_STOCK, HoldStock { .. }) …
/// // and in a later step: let held: Held = run.output(HOLD_STOCK)?;
/// ```
///
/// A plain `&'static str` names a step whose output no other step reads.
pub struct StepName<T> {
    name: &'static str,
    _output: PhantomData<fn() -> T>,
}

impl<T> StepName<T> {
    /// The step called `name`. The name is stored with every run: keep it stable
    /// across releases.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _output: PhantomData,
        }
    }

    /// The name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> From<&'static str> for StepName<T> {
    fn from(name: &'static str) -> Self {
        Self::new(name)
    }
}

impl<T> Clone for StepName<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for StepName<T> {}

impl<T> fmt::Debug for StepName<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepName({})", self.name)
    }
}

/// A step that runs in a unit of work on the boundaries it names. Its effect and the
/// run's checkpoint commit together: exactly once.
pub trait LocalStep<I>: Send + Sync + 'static {
    /// What the action returns; checkpointed as JSON and given to the compensation.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The boundaries the step touches. With `orchestration` (the checkpoint) they
    /// must be able to commit together; [`Sagas::register`] checks.
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
/// [`Sagas::register`] to start runs.
pub struct Saga<I> {
    pub(super) name: &'static str,
    pub(super) steps: Vec<StepDefinition<I>>,
    pub(super) lease: Duration,
}

pub(crate) struct StepDefinition<I> {
    pub(crate) name: &'static str,
    pub(crate) policy: RetryPolicy,
    pub(crate) kind: StepKind<I>,
}

pub(crate) enum StepKind<I> {
    Local(Box<dyn erased::ErasedLocal<I>>),
    External(Box<dyn erased::ErasedExternal<I>>),
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
    pub fn local<S: LocalStep<I>>(self, name: impl Into<StepName<S::Output>>, step: S) -> Self {
        let name = name.into().name();
        self.push(name, StepKind::Local(Box::new(erased::Local(step))))
    }

    /// Appends an external step called `name` with the default [`RetryPolicy`].
    #[must_use]
    pub fn external<S: ExternalStep<I>>(
        self,
        name: impl Into<StepName<S::Output>>,
        step: S,
    ) -> Self {
        let name = name.into().name();
        self.push(name, StepKind::External(Box::new(erased::External(step))))
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
    pub(crate) fn check(&self, databases: &Databases) -> Result<(), String> {
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
            if self.lease <= policy.timeout + policy.backoff.max {
                return Err(format!(
                    "its lease ({:?}) must exceed step `{}`'s timeout plus its longest backoff ({:?})",
                    self.lease,
                    step.name,
                    policy.timeout + policy.backoff.max
                ));
            }
            if let StepKind::Local(local) = &step.kind {
                let mut boundaries = local.boundaries().to_vec();
                boundaries.push(COORDINATOR_BOUNDARY);
                databases.plan(&boundaries).map_err(|err| {
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
