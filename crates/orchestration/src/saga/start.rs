//! Starting a run under its idempotency key (or finding the run the key already
//! started), and waiting for a run to end.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use super::driver::{Fresh, Origin, drive};
use super::store::{self, NewRun};
use super::{RunDetails, Saga, SagaError, Sagas};
use crate::backoff::Backoff;
use crate::schema::COORDINATOR_BOUNDARY;
use crate::topology::DatabaseId;

/// The database holding the runs: the `orchestration` boundary's.
pub(super) fn run_store(sagas: &Sagas) -> Result<RunStore<'_>, SagaError> {
    let (_, index) = sagas
        .databases()
        .boundary(COORDINATOR_BOUNDARY)
        .ok_or(SagaError::NoRunStore)?;
    let (id, connection) = sagas.databases().database(index);
    Ok(RunStore { id, connection })
}

/// The connection to the runs' database, and its name for errors.
#[derive(Clone, Copy)]
pub(super) struct RunStore<'f> {
    id: &'f DatabaseId,
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
    pub(super) fn unread(&self, run_id: Uuid, source: DbErr) -> SagaError {
        SagaError::Unread {
            run_id,
            database: self.id.clone(),
            source,
        }
    }
}

pub(super) async fn start<I>(
    sagas: &Sagas,
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
    let store = run_store(sagas)?;
    let db = store.connection;
    let error = |source| store.error(source);
    let holder = sagas.databases().holder();
    // Registered before it holds a run, so that no recovery takes this instance for
    // gone (see `store::claim_expired`).
    if let Some(registration) = sagas.databases().registration() {
        registration.ensure_registered().await;
    }
    let id = Uuid::now_v7();
    let new = NewRun {
        id,
        saga: saga.name,
        key: key.to_owned(),
        input: input.clone(),
        holder,
        lease: saga.lease,
        now: sagas.databases().clock().now(),
    };
    // The driver stores the run in the transaction of its first local steps (see
    // `Driver::run`), on its own task: the run goes on if the caller stops waiting.
    let (told, stored) = oneshot::channel();
    let (tell_end, ended) = oneshot::channel();
    let fresh = Fresh {
        new,
        stored: told,
        ended: tell_end,
    };
    let (driver_sagas, driven) = (sagas.clone(), Arc::clone(saga));
    // Within the caller's span (an HTTP request's, say), so that the run's spans
    // belong to the caller's trace.
    let caller = tracing::Span::current();
    let started = tokio::time::Instant::now();
    let driving = sagas.drivers().spawn(move |stop| {
        Box::pin(
            async move { drive(&driver_sagas, &driven, id, stop, Origin::Fresh(fresh)).await }
                .instrument(caller),
        )
    });
    let inserted = stored
        .await
        .map_err(|_| SagaError::NotStarted(saga.name))?
        .map_err(&error)?;
    if inserted {
        // Dropping the handle on timeout detaches the task; it is not cancelled.
        let driven = tokio::time::timeout(wait.saturating_sub(started.elapsed()), driving).await;
        if driven.is_ok()
            && let Ok(details) = ended.await
        {
            return Ok(details);
        }
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
    wait_for(sagas, existing.status.id, wait).await
}

/// Polls run `id` until it is no longer running or compensating, or `wait` passed.
pub(super) async fn wait_for(
    sagas: &Sagas,
    id: Uuid,
    wait: Duration,
) -> Result<RunDetails, SagaError> {
    let store = run_store(sagas)?;
    let deadline = tokio::time::Instant::now() + wait;
    let polls = Backoff::new(Duration::from_millis(2), Duration::from_millis(100));
    let mut polled = 0;
    loop {
        let details = store::details(store.connection, id)
            .await
            .map_err(|source| store.unread(id, source))?
            .ok_or(SagaError::UnknownRun(id))?;
        let now = tokio::time::Instant::now();
        if !details.run.state.is_active() || now >= deadline {
            return Ok(details);
        }
        polled += 1;
        tokio::time::sleep(polls.delay(polled).min(deadline - now)).await;
    }
}
