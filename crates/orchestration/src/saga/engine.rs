//! The saga engine of one application: the registered sagas, the runs this process is
//! driving, and the admin operations on runs.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::registry::{Driven, Drivers, Registry};
use super::{RunDetails, RunFilter, RunStatus, Saga, SagaError, SagaHandle, admin};
use crate::databases::Databases;
use crate::error::FabricError;
use crate::schema::COORDINATOR_BOUNDARY;
use crate::unit_of_work::Pipelines;

/// The registered sagas and their runs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sagas {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pipelines: Pipelines,
    registry: RwLock<Registry>,
    /// The saga runs this process is driving.
    drivers: Drivers,
}

impl Sagas {
    pub(crate) fn new(pipelines: Pipelines) -> Self {
        Self {
            inner: Arc::new(Inner {
                pipelines,
                registry: RwLock::default(),
                drivers: Drivers::default(),
            }),
        }
    }

    /// Registers `saga`, so that runs of it can start here and the recovery worker of
    /// this instance can resume its abandoned runs.
    ///
    /// # Errors
    /// The `orchestration` boundary (which holds the runs) is not registered, a saga
    /// of this name already is, or the definition cannot run on this topology (no
    /// steps, a local step that cannot commit with its checkpoint, a lease shorter
    /// than a step's timeout plus backoff).
    pub fn register<I>(&self, saga: Saga<I>) -> Result<SagaHandle<I>, FabricError>
    where
        I: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        if self.databases().boundary(COORDINATOR_BOUNDARY).is_none() {
            return Err(FabricError::UnknownBoundary {
                name: COORDINATOR_BOUNDARY.to_owned(),
                registered: self.databases().registered_names(),
            });
        }
        saga.check(self.databases())
            .map_err(|reason| FabricError::InvalidSaga {
                saga: saga.name(),
                reason,
            })?;
        let name = saga.name();
        let saga = Arc::new(saga);
        let added = self
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(name, Arc::new(Arc::clone(&saga)));
        if !added {
            return Err(FabricError::DuplicateSaga(name));
        }
        Ok(SagaHandle::new(self.clone(), saga))
    }

    /// Saga runs, newest first.
    ///
    /// # Errors
    /// The runs' database could not be read.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunStatus>, SagaError> {
        admin::list(self, filter).await
    }

    /// One saga run with its input and checkpoints.
    ///
    /// # Errors
    /// [`SagaError::UnknownRun`], or the runs' database could not be read.
    pub async fn run(&self, id: Uuid) -> Result<RunDetails, SagaError> {
        admin::show(self, id).await
    }

    /// Makes a `failed` run compensate again; the recovery worker of a running
    /// instance that knows its saga drives it.
    ///
    /// # Errors
    /// [`SagaError::InvalidState`] if the run is not `failed`, [`SagaError::UnknownRun`],
    /// or a database failure.
    pub async fn retry(&self, id: Uuid) -> Result<RunDetails, SagaError> {
        admin::retry(self, id).await
    }

    /// Cancels a run: a `running` run stops before its next step and compensates what
    /// took effect, ending `cancelled`; a `failed` run is abandoned as `cancelled`.
    ///
    /// # Errors
    /// [`SagaError::InvalidState`] for a run in any other state,
    /// [`SagaError::UnknownRun`], or a database failure.
    pub async fn cancel(&self, id: Uuid) -> Result<RunDetails, SagaError> {
        admin::cancel(self, id).await
    }

    /// The registered sagas' names and their longest lease.
    pub(crate) fn names_and_lease(&self) -> (Vec<&'static str>, Duration) {
        let registry = self
            .inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (registry.names(), registry.longest_lease())
    }

    pub(crate) fn registered(&self, name: &str) -> Option<Arc<dyn Driven>> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
    }

    pub(crate) fn drivers(&self) -> &Drivers {
        &self.inner.drivers
    }

    pub(crate) fn pipelines(&self) -> &Pipelines {
        &self.inner.pipelines
    }

    pub(crate) fn databases(&self) -> &Databases {
        self.inner.pipelines.databases()
    }
}
