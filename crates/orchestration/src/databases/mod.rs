//! The databases of one application: one pool per distinct database, the boundaries
//! laid out on them, where each lives, the commit plan for any set of them, their
//! migrations, health and pools, and this instance's identity for two-phase commits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

mod migrations;

use crate::boundary::Boundary;
use crate::clock::Clock;
use crate::database::{Database, DatabaseSettings};
use crate::error::{FabricError, UnitOfWorkError};
use crate::instance::Registration;
use crate::schema::{self, COORDINATOR_BOUNDARY, outbox::OUTBOX_SCHEMA};
use crate::topology::{Backend, BoundaryLocation, DatabaseId, DatabaseUrl, Topology};

/// The connected databases and the boundaries on them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Databases {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    databases: Vec<Database>,
    /// Every boundary in registration order, with the index of its database.
    boundaries: Vec<(Boundary, usize)>,
    /// The database holding the `orchestration` boundary, if it is PostgreSQL: the
    /// coordinator of two-phase commits.
    coordinator: Option<usize>,
    /// Distinguishes this process's prepared transactions from other instances'.
    instance: String,
    settings: DatabaseSettings,
    /// With a PostgreSQL coordinator: this instance's entry in the registry of live
    /// instances, which heartbeats once the instance prepares or holds a saga run.
    registration: Option<Arc<Registration>>,
}

/// How a unit of work commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitPlan {
    /// No step touched a database; there is nothing to commit.
    Nothing,
    /// Every touched boundary is on one database: one local transaction.
    Local {
        /// The database.
        database: DatabaseId,
        /// The touched boundaries, in the order first touched.
        boundaries: Vec<&'static str>,
    },
    /// The touched boundaries are on several PostgreSQL databases: each participant
    /// prepares, the coordinator logs the decision, then every participant commits.
    TwoPhase {
        /// The database holding the decision log.
        coordinator: DatabaseId,
        /// Each participating database with its touched boundaries.
        participants: Vec<(DatabaseId, Vec<&'static str>)>,
    },
}

impl fmt::Display for CommitPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nothing => f.write_str("nothing to commit"),
            Self::Local {
                database,
                boundaries,
            } => write!(
                f,
                "local transaction on {database} [{}]",
                boundaries.join(", ")
            ),
            Self::TwoPhase {
                coordinator,
                participants,
            } => {
                write!(f, "two-phase commit coordinated on {coordinator}:")?;
                for (database, boundaries) in participants {
                    write!(f, " {database} [{}]", boundaries.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Whether one database answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseHealth {
    /// The database.
    pub database: DatabaseId,
    /// The boundaries it holds.
    pub boundaries: Vec<&'static str>,
    /// `None` if it answered, else why not.
    pub error: Option<String>,
}

impl Databases {
    /// Connects one pool per distinct database of `topology` and lays out `boundaries`
    /// (and an outbox on each database) on them (schemas, databases or files are created when missing, unless
    /// `settings` says not to). Boundaries keep the order given: it is the order
    /// migrations run in.
    ///
    /// # Errors
    /// A boundary name that is invalid or registered twice, an override naming no
    /// registered boundary, or a database that cannot be reached or prepared.
    pub async fn connect_with(
        topology: &Topology,
        settings: &DatabaseSettings,
        boundaries: impl IntoIterator<Item = Boundary>,
    ) -> Result<Self, FabricError> {
        let boundaries: Vec<Boundary> = boundaries.into_iter().collect();
        for (i, boundary) in boundaries.iter().enumerate() {
            if !boundary.has_valid_name() {
                return Err(FabricError::InvalidBoundaryName(boundary.name()));
            }
            if boundaries[..i].iter().any(|b| b.name() == boundary.name()) {
                return Err(FabricError::DuplicateBoundary(boundary.name()));
            }
            if boundary.name() == OUTBOX_SCHEMA {
                return Err(FabricError::ReservedBoundary(boundary.name()));
            }
        }
        for (name, _) in topology.overrides() {
            if !boundaries.iter().any(|b| b.name() == name) {
                return Err(FabricError::UnknownBoundary {
                    name: name.to_owned(),
                    registered: names(&boundaries),
                });
            }
        }

        // Group boundaries by the database that holds them, in first-seen order.
        let mut groups: Vec<(DatabaseUrl, Vec<Boundary>)> = Vec::new();
        let mut placed = Vec::with_capacity(boundaries.len());
        for boundary in boundaries {
            let url = topology.url_of(boundary.name());
            let index = match groups.iter().position(|(u, _)| u == url) {
                Some(index) => index,
                None => {
                    groups.push((url.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[index].1.push(boundary);
            placed.push((boundary, index));
        }
        // Every database keeps an outbox for the boundaries on it.
        for (index, (_, members)) in groups.iter_mut().enumerate() {
            let outbox = schema::outbox::boundary();
            members.push(outbox);
            placed.push((outbox, index));
        }
        let mut databases = Vec::with_capacity(groups.len());
        for (url, members) in groups {
            let database = Database::connect(url, members, settings).await?;
            tracing::info!(
                database = %database.id,
                backend = %database.url.backend(),
                boundaries = %names(&database.boundaries),
                "connected"
            );
            databases.push(database);
        }
        let coordinator = placed
            .iter()
            .find(|(b, _)| b.name() == COORDINATOR_BOUNDARY)
            .map(|(_, index)| *index)
            .filter(|index| databases[*index].url.backend() == Backend::Postgres);
        let postgres = databases
            .iter()
            .filter(|d| d.url.backend() == Backend::Postgres)
            .count();
        if postgres > 1 {
            if coordinator.is_none() {
                return Err(FabricError::Database {
                    database: databases[0].id.clone(),
                    reason: format!(
                        "boundaries are split across PostgreSQL databases, which commit together by \
                         two-phase commit; register the `{COORDINATOR_BOUNDARY}` boundary on one of them"
                    ),
                });
            }
            for database in databases
                .iter()
                .filter(|d| d.url.backend() == Backend::Postgres)
            {
                database.require_prepared_transactions().await?;
            }
        }
        let instance = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let registration = coordinator.map(|index| {
            Arc::new(Registration::new(
                instance.clone(),
                databases[index].control().clone(),
                settings.instance_timeout,
            ))
        });
        Ok(Self {
            inner: Arc::new(Inner {
                databases,
                boundaries: placed,
                coordinator,
                instance,
                settings: settings.clone(),
                registration,
            }),
        })
    }

    /// Where every boundary lives, in registration order.
    #[must_use]
    pub fn locations(&self) -> Vec<BoundaryLocation> {
        self.inner
            .boundaries
            .iter()
            .map(|(b, db)| BoundaryLocation {
                boundary: b.name(),
                database: self.inner.databases[*db].id.clone(),
            })
            .collect()
    }

    /// The connection pool of the database that holds `boundary`, for reads and for
    /// writes that need no unit of work.
    ///
    /// # Errors
    /// `boundary` is not registered.
    pub fn connection(&self, boundary: &str) -> Result<&DatabaseConnection, FabricError> {
        let index = self
            .database_index(boundary)
            .ok_or_else(|| FabricError::UnknownBoundary {
                name: boundary.to_owned(),
                registered: self.registered_names(),
            })?;
        Ok(&self.inner.databases[index].connection)
    }

    /// The commit plan for a unit of work that touches `boundaries`, decided before
    /// anything runs.
    ///
    /// # Errors
    /// A boundary is not registered, or the boundaries cannot commit together
    /// ([`UnitOfWorkError::NotAtomic`], with the reason).
    pub fn plan(&self, boundaries: &[&str]) -> Result<CommitPlan, UnitOfWorkError> {
        let mut touched: Vec<(&'static str, usize)> = Vec::new();
        for name in boundaries {
            let (boundary, index) =
                self.boundary(name)
                    .ok_or_else(|| UnitOfWorkError::UnknownBoundary {
                        boundary: (*name).to_owned(),
                    })?;
            if !touched.iter().any(|(b, _)| *b == boundary.name()) {
                touched.push((boundary.name(), index));
            }
        }
        self.plan_for(&touched)
    }

    /// Pings every database; one that has not answered within `timeout` counts as
    /// down.
    pub async fn health(&self, timeout: Duration) -> Vec<DatabaseHealth> {
        let mut health = Vec::with_capacity(self.inner.databases.len());
        for database in &self.inner.databases {
            let ping = database.connection.execute_unprepared("SELECT 1");
            let error = match tokio::time::timeout(timeout, ping).await {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some(format!("no answer within {timeout:?}")),
            };
            health.push(DatabaseHealth {
                database: database.id.clone(),
                boundaries: database.boundaries.iter().map(Boundary::name).collect(),
                error,
            });
        }
        health
    }

    /// How full each connection pool is.
    pub fn pool_stats(&self) -> Vec<crate::database::PoolStats> {
        self.inner
            .databases
            .iter()
            .flat_map(crate::database::Database::pool_stats)
            .collect()
    }

    /// Leaves the registry of live instances and closes every pool, waiting at most a
    /// few seconds in all for connections in use to be returned: a pool whose
    /// connections are stuck in an unresponsive database is named in the log and
    /// abandoned.
    pub async fn close(&self) {
        const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        if let Some(registration) = &self.inner.registration {
            let _ = tokio::time::timeout_at(deadline, registration.deregister()).await;
        }
        for database in &self.inner.databases {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            database.close(left.max(Duration::from_millis(100))).await;
        }
    }

    pub(crate) fn boundary(&self, name: &str) -> Option<(Boundary, usize)> {
        self.inner
            .boundaries
            .iter()
            .find(|(b, _)| b.name() == name)
            .copied()
    }

    fn database_index(&self, boundary: &str) -> Option<usize> {
        self.boundary(boundary).map(|(_, index)| index)
    }

    pub(crate) fn database(&self, index: usize) -> (&DatabaseId, &DatabaseConnection) {
        let database = &self.inner.databases[index];
        (&database.id, &database.connection)
    }

    /// The pool of database `index` for finishing and recovering two-phase commits
    /// (see `Database::control`).
    pub(crate) fn control(&self, index: usize) -> (&DatabaseId, &DatabaseConnection) {
        let database = &self.inner.databases[index];
        (&database.id, database.control())
    }

    pub(crate) fn settings(&self) -> &DatabaseSettings {
        &self.inner.settings
    }

    /// The clock of everything on these databases (see [`DatabaseSettings::clock`]).
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.inner.settings.clock
    }

    pub(crate) fn registration(&self) -> Option<&Arc<Registration>> {
        self.inner.registration.as_ref()
    }

    pub(crate) fn database_count(&self) -> usize {
        self.inner.databases.len()
    }

    pub(crate) fn coordinator(&self) -> Option<usize> {
        self.inner.coordinator
    }

    pub(crate) fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Who holds a lease or a claim taken by this process: `<instance>:<pid>`.
    pub(crate) fn holder(&self) -> String {
        format!("{}:{}", self.inner.instance, std::process::id())
    }

    /// Every PostgreSQL database with its control pool, for in-doubt recovery.
    pub(crate) fn postgres_databases(
        &self,
    ) -> impl Iterator<Item = (&DatabaseId, &DatabaseConnection)> {
        self.inner
            .databases
            .iter()
            .filter(|d| d.url.backend() == Backend::Postgres)
            .map(|d| (&d.id, d.control()))
    }

    /// The plan for the touched `(boundary, database index)` pairs.
    pub(crate) fn plan_for(
        &self,
        touched: &[(&'static str, usize)],
    ) -> Result<CommitPlan, UnitOfWorkError> {
        let Some((_, first)) = touched.first() else {
            return Ok(CommitPlan::Nothing);
        };
        if touched.iter().all(|(_, index)| index == first) {
            return Ok(CommitPlan::Local {
                database: self.inner.databases[*first].id.clone(),
                boundaries: touched.iter().map(|(b, _)| *b).collect(),
            });
        }
        let backends: Vec<Backend> = touched
            .iter()
            .map(|(_, index)| self.inner.databases[*index].url.backend())
            .collect();
        let reason = if backends.iter().any(|b| *b != backends[0]) {
            "they are on different engines; only PostgreSQL databases commit together, by two-phase commit"
        } else {
            match backends[0] {
                Backend::Postgres => match self.inner.coordinator {
                    Some(coordinator) => {
                        let mut participants: Vec<(DatabaseId, Vec<&'static str>)> = Vec::new();
                        for (boundary, index) in touched {
                            let id = &self.inner.databases[*index].id;
                            match participants.iter_mut().find(|(d, _)| d == id) {
                                Some((_, boundaries)) => boundaries.push(boundary),
                                None => participants.push((id.clone(), vec![boundary])),
                            }
                        }
                        return Ok(CommitPlan::TwoPhase {
                            coordinator: self.inner.databases[coordinator].id.clone(),
                            participants,
                        });
                    }
                    None => {
                        "no `orchestration` boundary on PostgreSQL to coordinate a two-phase commit"
                    }
                },
                Backend::Sqlite => {
                    "SQLite files in different directories are not attached to one connection"
                }
                Backend::MySql => {
                    "MySQL/MariaDB databases on different servers (XA is not supported)"
                }
            }
        };
        Err(UnitOfWorkError::NotAtomic {
            locations: touched
                .iter()
                .map(|(boundary, index)| BoundaryLocation {
                    boundary,
                    database: self.inner.databases[*index].id.clone(),
                })
                .collect(),
            reason: reason.to_owned(),
        })
    }

    pub(crate) fn registered_names(&self) -> String {
        let boundaries: Vec<Boundary> = self.inner.boundaries.iter().map(|(b, _)| *b).collect();
        names(&boundaries)
    }
}

fn names(boundaries: &[Boundary]) -> String {
    boundaries
        .iter()
        .map(Boundary::name)
        .collect::<Vec<_>>()
        .join(", ")
}
