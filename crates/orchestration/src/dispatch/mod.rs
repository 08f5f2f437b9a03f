//! Delivering events: the [`Dispatcher`] worker drains every database's outbox, running
//! each subscriber's [`Handler`] in a unit of work of its own; the [`EventBus`] holds
//! the subscribers and the outbox's admin operations.

mod dispatcher;
mod options;
mod routes;

use std::fmt;

use crate::databases::Databases;
use crate::error::FabricError;
use crate::failure::{Classify, Failure};
use crate::outbox::{self, Envelope, EventType, OutboxStatus, ReplayFilter};
use crate::topology::DatabaseId;
use crate::unit_of_work::{Pipelines, UnitOfWork};

pub use dispatcher::Dispatcher;
pub use options::{DispatcherOptions, InvalidOptions};
use routes::Routes;

/// The subscribers of one application and the outbox of each of its databases. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    pipelines: Pipelines,
    routes: Routes,
}

impl EventBus {
    pub(crate) fn new(pipelines: Pipelines) -> Self {
        Self {
            pipelines,
            routes: Routes::default(),
        }
    }

    fn databases(&self) -> &Databases {
        self.pipelines.databases()
    }

    /// Subscribes `handler`, under the unique name `subscriber`, to events of
    /// `event_type`. Subscribe at composition time, before units of work emit: an
    /// event reaches the subscribers registered when it is emitted.
    ///
    /// # Errors
    /// Another subscriber has the name `subscriber`.
    pub fn subscribe<T, H>(
        &self,
        event_type: EventType<T>,
        subscriber: &'static str,
        handler: H,
    ) -> Result<(), FabricError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        if !self.routes.add(subscriber, handler) {
            return Err(FabricError::DuplicateSubscriber(subscriber));
        }
        self.pipelines
            .outbox()
            .subscribe(event_type.name(), subscriber);
        Ok(())
    }

    /// The registered subscribers' names, sorted.
    #[must_use]
    pub fn subscribers(&self) -> Vec<&'static str> {
        self.routes.names()
    }

    /// The outbox of every database: pending, in flight and dead messages, and the age
    /// of the oldest pending one.
    ///
    /// # Errors
    /// An outbox could not be read.
    pub async fn status(&self) -> Result<Vec<OutboxStatus>, FabricError> {
        let databases = self.databases();
        let now = databases.clock().now();
        let mut statuses = Vec::with_capacity(databases.database_count());
        for index in 0..databases.database_count() {
            let (id, connection) = databases.database(index);
            let status = outbox::status(connection, id, now)
                .await
                .map_err(|source| FabricError::Outbox {
                    database: id.clone(),
                    source,
                })?;
            statuses.push(status);
        }
        Ok(statuses)
    }

    /// Makes the dead messages that match `filter` pending again, with their attempts
    /// reset; returns how many per database.
    ///
    /// # Errors
    /// An outbox could not be changed; the databases before it are replayed.
    pub async fn replay(
        &self,
        filter: &ReplayFilter,
    ) -> Result<Vec<(DatabaseId, u64)>, FabricError> {
        let databases = self.databases();
        let now = databases.clock().now();
        let mut replayed = Vec::with_capacity(databases.database_count());
        for index in 0..databases.database_count() {
            let (id, connection) = databases.database(index);
            let count = outbox::replay(connection, filter, now)
                .await
                .map_err(|source| FabricError::Outbox {
                    database: id.clone(),
                    source,
                })?;
            if count > 0 {
                // Wake this process's dispatchers and, on PostgreSQL, the others'.
                self.pipelines.outbox().wake(index).notify_one();
                if let Err(err) = outbox::notify(connection).await {
                    tracing::warn!(database = %id, error = %err, "cannot notify outbox dispatchers");
                }
            }
            replayed.push((id.clone(), count));
        }
        Ok(replayed)
    }
}

/// A subscriber's reaction to one event type.
///
/// The handler runs in a unit of work of its own, named after the subscriber. Its
/// first step on each database records the delivery in that database's inbox within
/// the same transaction, so a redelivered event is skipped once its effect has
/// committed. Work a handler does outside its unit of work (a call to another system)
/// is at least once: make it idempotent, for instance keyed by the event id.
pub trait Handler<T>: Send + Sync + 'static {
    /// Handles one delivery. An `Err` is retried with backoff, up to the dispatcher's
    /// attempt limit; then the message is dead until replayed.
    fn handle(
        &self,
        event: T,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Why a delivery failed: any error, and whether retrying can help.
pub struct HandlerError {
    source: Box<dyn std::error::Error + Send + Sync>,
    failure: Failure,
}

impl HandlerError {
    /// A failure that retrying cannot mend (the payload does not parse, say): the
    /// message is dead at once.
    pub fn permanent(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            failure: Failure::Permanent,
        }
    }

    /// A failure described by `message`, retried like any other.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            source: message.to_string().into(),
            failure: Failure::Transient,
        }
    }

    /// Whether retrying cannot help.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.failure == Failure::Permanent
    }
}

impl Classify for HandlerError {
    fn failure(&self) -> Failure {
        self.failure
    }
}

/// Any error, retried: a handler says [`HandlerError::permanent`] when retrying cannot
/// help.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(source: E) -> Self {
        Self {
            source: Box::new(source),
            failure: Failure::Transient,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("source", &self.source)
            .field("failure", &self.failure)
            .finish()
    }
}
