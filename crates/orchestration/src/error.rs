//! Errors of connecting, migrating and running units of work.

use sea_orm::DbErr;

use crate::failure::{Classify, Failure, is_unavailable};
use crate::topology::{BoundaryLocation, DatabaseId};

/// Connecting to databases and migrating boundaries failed.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// A boundary name cannot serve as a schema name.
    #[error(
        "boundary name `{0}` is invalid: use at most 48 lowercase letters, digits and `_`, starting with a letter"
    )]
    InvalidBoundaryName(&'static str),
    /// Two boundaries share a name.
    #[error("boundary `{0}` is registered twice")]
    DuplicateBoundary(&'static str),
    /// A boundary took a name the fabric keeps for itself.
    #[error(
        "boundary name `{0}` is reserved: the fabric keeps its outbox under it on every database"
    )]
    ReservedBoundary(&'static str),
    /// Two subscribers share a name.
    #[error("an event subscriber named `{0}` is already registered")]
    DuplicateSubscriber(&'static str),
    /// Two sagas share a name.
    #[error("a saga named `{0}` is already registered")]
    DuplicateSaga(&'static str),
    /// A saga's definition cannot run on this fabric.
    #[error("saga `{saga}` cannot run: {reason}")]
    InvalidSaga {
        /// The saga.
        saga: &'static str,
        /// Why not.
        reason: String,
    },
    /// The outbox of a database could not be read or changed.
    #[error("the outbox on {database} failed: {source}")]
    Outbox {
        /// The database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
    /// A name refers to no registered boundary.
    #[error("no boundary named `{name}` is registered (registered: {registered})")]
    UnknownBoundary {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },
    /// A database could not be reached or prepared.
    #[error("cannot use database {database}: {reason}")]
    Database {
        /// The database.
        database: DatabaseId,
        /// What went wrong, and where it helps, what to do.
        reason: String,
    },
    /// A boundary's migrations failed.
    #[error("migrating boundary `{boundary}` on {database} failed: {source}")]
    Migration {
        /// The boundary.
        boundary: &'static str,
        /// Its database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
}

/// A unit of work could not run or commit.
#[derive(Debug, thiserror::Error)]
pub enum UnitOfWorkError {
    /// A step (or a plan) named a boundary the fabric does not know.
    #[error("boundary `{boundary}` is not registered")]
    UnknownBoundary {
        /// The unknown name.
        boundary: String,
    },
    /// The touched boundaries live on databases that cannot commit together (not one
    /// database, and not all PostgreSQL for two-phase commit); `reason` says which.
    #[error("these boundaries cannot commit atomically ({reason}): {}", list(.locations))]
    NotAtomic {
        /// Every touched boundary with its database.
        locations: Vec<BoundaryLocation>,
        /// Why no atomic commit is possible.
        reason: String,
    },
    /// Two-phase commit needs the coordinator's log, the `orchestration` boundary.
    #[error(
        "two-phase commit needs the `orchestration` boundary registered on a PostgreSQL database"
    )]
    NoCoordinator,
    /// A participant could not prepare; every participant was rolled back.
    #[error("PREPARE TRANSACTION on {database} failed, every participant rolled back: {source}")]
    Prepare {
        /// The database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
    /// The commit decision could not be recorded; every participant was rolled back.
    #[error(
        "recording the commit decision on {database} failed, every participant rolled back: {source}"
    )]
    Decide {
        /// The coordinator database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
    /// Recovery had already aborted this run (it exceeded the in-doubt timeout).
    #[error("run {run_id} was aborted by recovery before it could commit; nothing was persisted")]
    Aborted {
        /// The run.
        run_id: uuid::Uuid,
    },
    /// The transaction could not begin.
    #[error("cannot begin a transaction on {database}: {source}")]
    Begin {
        /// The database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
    /// An emitted event does not serialise to JSON.
    #[error("event `{event_type}` does not serialise to JSON: {source}")]
    Serialize {
        /// The event type.
        event_type: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },
    /// Writing the outbox or the inbox failed.
    #[error("the outbox on {database} failed: {source}")]
    Outbox {
        /// The database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
    /// The inbox shows that this subscriber already handled this event and its effect
    /// committed; the redelivery is skipped.
    #[error("subscriber `{subscriber}` already handled event {event_id}")]
    AlreadyHandled {
        /// The subscriber.
        subscriber: &'static str,
        /// The event.
        event_id: uuid::Uuid,
    },
    /// The commit failed; nothing of the unit of work is persisted.
    #[error("commit on {database} failed: {source}")]
    Commit {
        /// The database.
        database: DatabaseId,
        /// The database's error.
        source: DbErr,
    },
}

/// A unit of work whose topology or code is wrong (an unknown boundary, boundaries
/// that cannot commit together, an event that does not serialise) fails the same way
/// every time; anything else is a database failure, worth retrying.
impl Classify for UnitOfWorkError {
    fn failure(&self) -> Failure {
        match self {
            Self::UnknownBoundary { .. }
            | Self::NotAtomic { .. }
            | Self::NoCoordinator
            | Self::Serialize { .. } => Failure::Permanent,
            _ => Failure::Transient,
        }
    }
}

impl UnitOfWorkError {
    /// Whether a database could not be used right now (see [`is_unavailable`]):
    /// running the unit of work again later may succeed.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Begin { source, .. }
            | Self::Commit { source, .. }
            | Self::Prepare { source, .. }
            | Self::Decide { source, .. }
            | Self::Outbox { source, .. } => is_unavailable(source),
            _ => false,
        }
    }
}

fn list(locations: &[BoundaryLocation]) -> String {
    locations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
