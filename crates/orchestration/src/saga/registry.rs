//! The registry that lets any instance's recovery drive a run of a saga it knows by
//! name (the saga with its input type hidden), and the tasks driving this process's
//! runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::driver::{Origin, drive};
use super::{BoxFuture, Saga, Sagas};

/// A registered saga with its input type hidden: what recovery drives by name.
pub(crate) trait Driven: Send + Sync {
    fn lease(&self) -> Duration;

    fn drive(&self, sagas: Sagas, run_id: Uuid, stop: CancellationToken) -> BoxFuture<'static, ()>;
}

impl<I> Driven for Arc<Saga<I>>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn lease(&self) -> Duration {
        self.lease
    }

    fn drive(&self, sagas: Sagas, run_id: Uuid, stop: CancellationToken) -> BoxFuture<'static, ()> {
        let saga = Arc::clone(self);
        Box::pin(async move { drive(&sagas, &saga, run_id, stop, Origin::Stored).await })
    }
}

/// The registered sagas, by name.
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
