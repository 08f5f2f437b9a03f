//! Durable sagas: an ordered list of steps, each with an action and a compensation,
//! whose runs survive crashes.
//!
//! A run is a row in `orchestration.saga_runs`: its input, where it is, and which
//! instance drives it under a lease. Each step that takes effect leaves a checkpoint
//! in `orchestration.saga_steps` with its output:
//!
//! - a [`LocalStep`] runs in a unit of work that also writes the checkpoint, so the
//!   step's effect and the checkpoint commit together (one transaction, or two-phase
//!   commit): the effect happens exactly once, even if two instances race for it.
//!   Consecutive local steps on the runs' database share one such unit of work (and
//!   a new run's insert joins the first): if one of them fails, nothing of them is
//!   stored and they run again one at a time, so an action may run again after a
//!   later step's failure, as after a retry;
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
mod attempt;
mod decide;
mod definition;
mod driver;
mod engine;
mod erased;
mod recovery;
mod registry;
mod run;
mod start;
mod store;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::failure::is_unavailable;
use crate::topology::DatabaseId;

pub use admin::RunFilter;
pub use definition::{
    ExternalStep, IdempotencyKey, LocalStep, MAX_KEY_LEN, RetryPolicy, Saga, SagaContext,
    StepError, StepName,
};
pub(crate) use definition::{StepDefinition, StepKind};
pub use engine::Sagas;
pub use recovery::{SagaRecovery, SagaRecoveryOptions};
pub use run::{RunDetails, RunState, RunStatus, StepRecord, StepState};

use crate::future::BoxFuture;

impl SagaError {
    /// Whether the runs' database could not be used right now (see
    /// [`is_unavailable`]): asking again later may succeed.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unread { source, .. } | Self::Database { source, .. } => is_unavailable(source),
            _ => false,
        }
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
    /// The new run's driver ended (one of its steps panicked) before the run was
    /// stored: the run did not start.
    #[error("a new run of saga `{0}` ended before it was stored")]
    NotStarted(&'static str),
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
    sagas: Sagas,
    saga: Arc<Saga<I>>,
    _input: PhantomData<fn(I)>,
}

impl<I> Clone for SagaHandle<I> {
    fn clone(&self) -> Self {
        Self {
            sagas: self.sagas.clone(),
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
    pub(crate) fn new(sagas: Sagas, saga: Arc<Saga<I>>) -> Self {
        Self {
            sagas,
            saga,
            _input: PhantomData,
        }
    }

    /// Starts a run of the saga with `input` under `key`, drives it in this process,
    /// and waits up to `wait` for it to finish; returns the run as it is then. The
    /// run is stored by the commit of its first local steps (before an external first
    /// step, on its own), and this returns no sooner, whatever `wait`.
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
        start::start(&self.sagas, &self.saga, key, input, wait).await
    }

    /// The run with this id, with its steps.
    ///
    /// # Errors
    /// [`SagaError::UnknownRun`], or a database failure.
    pub async fn run(&self, id: Uuid) -> Result<RunDetails, SagaError> {
        self.sagas.run(id).await
    }

    /// Waits up to `wait` for run `id` to finish; returns it as it is then.
    ///
    /// # Errors
    /// [`SagaError::UnknownRun`], or a database failure.
    pub async fn wait(&self, id: Uuid, wait: Duration) -> Result<RunDetails, SagaError> {
        start::wait_for(&self.sagas, id, wait).await
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
