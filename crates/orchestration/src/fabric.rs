//! The fabric: one application's engine, composed of its parts. [`Databases`] holds
//! the pools and the boundaries on them; units of work run on the databases and write
//! emitted events to the outbox; the [`EventBus`] holds the subscribers; [`Sagas`]
//! holds the registered sagas and drives their runs. Each part is reachable on its
//! own, so that a subsystem needs only the parts it uses.

use sea_orm::DatabaseConnection;

use crate::batch::{BatchOptions, BatchProgress};
use crate::boundary::Boundary;
use crate::clock::Clock;
use crate::database::DatabaseSettings;
use crate::databases::Databases;
use crate::dispatch::EventBus;
use crate::error::FabricError;
use crate::import::{Import, ImportError, ImportReport};
use crate::saga::Sagas;
use crate::topology::Topology;
use crate::unit_of_work::{Pipeline, Pipelines};

/// The connected engine of one application. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fabric {
    pipelines: Pipelines,
    events: EventBus,
    sagas: Sagas,
}

impl Fabric {
    /// [`Fabric::connect_with`] the default [`DatabaseSettings`].
    ///
    /// # Errors
    /// As [`Fabric::connect_with`].
    pub async fn connect(
        topology: &Topology,
        boundaries: impl IntoIterator<Item = Boundary>,
    ) -> Result<Self, FabricError> {
        Self::connect_with(topology, &DatabaseSettings::default(), boundaries).await
    }

    /// Connects the databases of `topology` and lays out `boundaries` on them (see
    /// [`Databases::connect_with`]).
    ///
    /// # Errors
    /// As [`Databases::connect_with`].
    pub async fn connect_with(
        topology: &Topology,
        settings: &DatabaseSettings,
        boundaries: impl IntoIterator<Item = Boundary>,
    ) -> Result<Self, FabricError> {
        let databases = Databases::connect_with(topology, settings, boundaries).await?;
        Ok(Self::new(databases))
    }

    /// The fabric over freshly connected `databases` (one fabric per connection: the
    /// subscribers and sagas live in the fabric).
    fn new(databases: Databases) -> Self {
        let pipelines = Pipelines::new(databases);
        Self {
            events: EventBus::new(pipelines.clone()),
            sagas: Sagas::new(pipelines.clone()),
            pipelines,
        }
    }

    /// The clock every part of the fabric reads (set by
    /// [`DatabaseSettings::clock`]): workflows and handlers pass its `now` to domain
    /// calls instead of reading the system time, so that tests can move it.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        self.databases().clock()
    }

    /// The databases: placements, migrations, health, pools.
    #[must_use]
    pub fn databases(&self) -> &Databases {
        self.pipelines.databases()
    }

    /// The event subscribers and the outbox of each database.
    #[must_use]
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The registered sagas and their runs.
    #[must_use]
    pub fn sagas(&self) -> &Sagas {
        &self.sagas
    }

    /// Starts describing a unit of work named `pipeline` (the name used in spans,
    /// summaries and metrics).
    #[must_use]
    pub fn unit_of_work(&self, pipeline: &'static str) -> Pipeline<'_> {
        self.pipelines.pipeline(pipeline)
    }

    /// The connection pool of the database that holds `boundary`, for reads and for
    /// writes that need no unit of work.
    ///
    /// # Errors
    /// `boundary` is not registered.
    pub fn connection(&self, boundary: &str) -> Result<&DatabaseConnection, FabricError> {
        self.databases().connection(boundary)
    }

    /// Imports `source` into the import's table, one transaction per chunk. Each chunk
    /// commits together with the import's cursor (`orchestration.import_cursors`, keyed
    /// by the import's name), so a crashed or interrupted import, run again with the
    /// same name and the same source, skips the rows already committed and continues.
    /// Use a new name for a new source (for example one per feed file).
    ///
    /// # Errors
    /// A chunk failed ([`ImportError`]); earlier chunks stay committed.
    pub async fn import(
        &self,
        import: &Import,
        source: impl IntoIterator<Item = Vec<sea_orm::Value>>,
        options: &BatchOptions,
        progress: impl FnMut(BatchProgress) + Send,
    ) -> Result<ImportReport, ImportError> {
        crate::import::run(&self.pipelines, import, source, options, progress).await
    }

    /// Rows of import `name` committed so far (0 if it never ran).
    ///
    /// # Errors
    /// The `orchestration` boundary is not registered, or the database failed.
    pub async fn import_position(&self, name: &str) -> Result<u64, ImportError> {
        crate::import::position(self.databases(), name).await
    }

    /// Leaves the registry of live instances and closes every pool (see
    /// [`Databases::close`]).
    pub async fn close(&self) {
        self.databases().close().await;
    }
}
