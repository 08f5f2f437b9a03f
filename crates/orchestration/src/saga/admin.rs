//! Operating on runs: listing, inspecting, retrying a failed run's compensation and
//! cancelling a run. Works from any process connected to the fabric (the CLI), with
//! or without the sagas registered: a changed run is driven by the recovery worker
//! of a running instance.

use uuid::Uuid;

use super::start::run_store;
use super::{RunDetails, RunState, RunStatus, SagaError, Sagas, store};

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs in these states; every state if empty.
    pub states: Vec<RunState>,
    /// At most this many, newest first; 50 if `None`.
    pub limit: Option<u64>,
}

pub(crate) async fn list(sagas: &Sagas, filter: &RunFilter) -> Result<Vec<RunStatus>, SagaError> {
    let runs = run_store(sagas)?;
    store::list(runs.connection, &filter.states, filter.limit.unwrap_or(50))
        .await
        .map_err(|source| runs.error(source))
}

pub(crate) async fn show(sagas: &Sagas, id: Uuid) -> Result<RunDetails, SagaError> {
    let runs = run_store(sagas)?;
    store::details(runs.connection, id)
        .await
        .map_err(|source| runs.error(source))?
        .ok_or(SagaError::UnknownRun(id))
}

async fn current(sagas: &Sagas, id: Uuid) -> Result<RunState, SagaError> {
    let runs = run_store(sagas)?;
    Ok(store::load(runs.connection, id)
        .await
        .map_err(|source| runs.error(source))?
        .ok_or(SagaError::UnknownRun(id))?
        .status
        .state)
}

pub(crate) async fn retry(sagas: &Sagas, id: Uuid) -> Result<RunDetails, SagaError> {
    let state = current(sagas, id).await?;
    if state != RunState::Failed {
        return Err(SagaError::InvalidState {
            id,
            state,
            operation: "retry",
        });
    }
    let runs = run_store(sagas)?;
    let changed = store::retry(runs.connection, id, sagas.databases().clock().now())
        .await
        .map_err(|source| runs.error(source))?;
    if changed == 0 {
        // It changed under us (another operator): report what it is now.
        return Err(SagaError::InvalidState {
            id,
            state: current(sagas, id).await?,
            operation: "retry",
        });
    }
    show(sagas, id).await
}

pub(crate) async fn cancel(sagas: &Sagas, id: Uuid) -> Result<RunDetails, SagaError> {
    let state = current(sagas, id).await?;
    if !matches!(state, RunState::Running | RunState::Failed) {
        return Err(SagaError::InvalidState {
            id,
            state,
            operation: "cancel",
        });
    }
    let runs = run_store(sagas)?;
    let changed = store::cancel(runs.connection, id, state, sagas.databases().clock().now())
        .await
        .map_err(|source| runs.error(source))?;
    if changed == 0 {
        return Err(SagaError::InvalidState {
            id,
            state: current(sagas, id).await?,
            operation: "cancel",
        });
    }
    show(sagas, id).await
}
