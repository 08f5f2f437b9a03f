//! One physical database: connecting to it on each engine, laying out its boundaries
//! (schemas, databases or attached files), and opening a boundary-scoped connection
//! for migrations.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::clock::Clock;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

mod sqlite;

use sqlite::{connect_sqlite, sqlite_options};

use crate::boundary::Boundary;
use crate::error::FabricError;
use crate::topology::{DatabaseId, DatabaseUrl};

/// Pool settings shared by every engine.
const POOL_SIZE: u32 = 16;
/// SQLite has one writer at a time; more connections only add lock contention.
const SQLITE_POOL_SIZE: u32 = 4;
/// Connections kept apart for finishing two-phase commits and resolving in-doubt ones
/// (`COMMIT PREPARED`, `ROLLBACK PREPARED`, the decision log, heartbeats): nothing that
/// waits on another transaction's row lock ever takes one, so a prepared transaction
/// can always be finished, however many ordinary connections wait on its locks.
const CONTROL_POOL_SIZE: u32 = 4;
/// The SQLite file that anchors multi-file commits. It must be a real file: SQLite only
/// makes a commit across attached files atomic when the main database is not in memory.
const SQLITE_MAIN_FILE: &str = "switchyard.db";

/// How the fabric connects to its databases and how long anything may wait on them.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Connecting to a database fails after this long, with the cause (refused,
    /// unknown host, authentication) when the driver gave one.
    pub connect_timeout: Duration,
    /// Waiting for a pooled connection fails after this long.
    pub acquire_timeout: Duration,
    /// A statement waiting for a lock that another transaction holds fails after this
    /// long, as an ordinary database error (a saga step retries it): PostgreSQL's
    /// `lock_timeout`, MySQL's `innodb_lock_wait_timeout` (whole seconds, at least
    /// one), SQLite's busy timeout.
    pub lock_timeout: Duration,
    /// An instance whose heartbeat is older than this is taken as gone: recovery rolls
    /// its undecided prepared transactions back at once instead of waiting for the
    /// in-doubt timeout. It heartbeats five times per period.
    pub instance_timeout: Duration,
    /// Create what is missing (the PostgreSQL or MySQL database, schemas, SQLite
    /// files). Off for commands that only read: a missing database is then an error.
    pub create_missing: bool,
    /// The time every part of the fabric reads (units of work, the outbox, sagas, the
    /// host's schedules and leases, the workflows): the system clock, or in tests one
    /// they move ([`Clock::manual`]).
    pub clock: Clock,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            instance_timeout: Duration::from_secs(5),
            create_missing: true,
            clock: Clock::system(),
        }
    }
}

/// How full one connection pool is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The database.
    pub database: DatabaseId,
    /// `main` (ordinary work) or `control` (PostgreSQL's pool for two-phase commits,
    /// recovery and heartbeats).
    pub pool: &'static str,
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: usize,
    /// The most connections it opens; when all are in use, callers wait (up to
    /// `database.acquire_timeout`).
    pub max: u32,
}

fn stats<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> (u32, usize, u32) {
    (
        pool.size(),
        pool.num_idle(),
        pool.options().get_max_connections(),
    )
}

/// A connected database and the boundaries it holds.
#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) id: DatabaseId,
    pub(crate) url: DatabaseUrl,
    /// The pool for ordinary work: units of work, reads, workers.
    pub(crate) connection: DatabaseConnection,
    /// PostgreSQL only: the pool kept for the second phase of two-phase commits,
    /// in-doubt recovery and heartbeats (see [`CONTROL_POOL_SIZE`]).
    pub(crate) control: Option<DatabaseConnection>,
    pub(crate) boundaries: Vec<Boundary>,
}

impl Database {
    /// Connects to `url` and lays out `boundaries` on it (creating the database,
    /// schemas or files that are missing, if `settings` says so).
    pub(crate) async fn connect(
        url: DatabaseUrl,
        boundaries: Vec<Boundary>,
        settings: &DatabaseSettings,
    ) -> Result<Self, FabricError> {
        let id = url.id();
        let (connection, control) = match &url {
            DatabaseUrl::Sqlite { dir } => {
                (connect_sqlite(&id, dir, &boundaries, settings).await?, None)
            }
            DatabaseUrl::Postgres(_) => {
                let (pool, control) = connect_postgres(&id, &url, &boundaries, settings).await?;
                (pool, Some(control))
            }
            DatabaseUrl::MySql(_) => (connect_mysql(&id, &url, &boundaries, settings).await?, None),
        };
        Ok(Self {
            id,
            url,
            connection,
            control,
            boundaries,
        })
    }

    /// The size of each of its pools, for metrics.
    pub(crate) fn pool_stats(&self) -> Vec<PoolStats> {
        let pools = std::iter::once(("main", &self.connection))
            .chain(self.control.iter().map(|control| ("control", control)));
        pools
            .map(|(pool, connection)| {
                let (size, idle, max) = match &self.url {
                    DatabaseUrl::Sqlite { .. } => stats(connection.get_sqlite_connection_pool()),
                    DatabaseUrl::Postgres(_) => stats(connection.get_postgres_connection_pool()),
                    DatabaseUrl::MySql(_) => stats(connection.get_mysql_connection_pool()),
                };
                PoolStats {
                    database: self.id.clone(),
                    pool,
                    size,
                    idle,
                    max,
                }
            })
            .collect()
    }

    /// The pool for finishing and recovering two-phase commits: the control pool on
    /// PostgreSQL, the ordinary one elsewhere (where there are none to finish).
    pub(crate) fn control(&self) -> &DatabaseConnection {
        self.control.as_ref().unwrap_or(&self.connection)
    }

    /// Closes both pools, each within `timeout`; the pools that did not close in time
    /// (connections stuck in the database) are named in the log and abandoned.
    pub(crate) async fn close(&self, timeout: Duration) {
        let pools = std::iter::once(("pool", &self.connection))
            .chain(self.control.iter().map(|control| ("control pool", control)));
        for (which, pool) in pools {
            if tokio::time::timeout(timeout, pool.clone().close())
                .await
                .is_err()
            {
                tracing::warn!(database = %self.id, ?timeout, "could not close the {which} in time: connections still in use; abandoning them");
            }
        }
    }

    /// Fails, saying how to fix it, if this PostgreSQL server does not allow prepared
    /// transactions (its default).
    pub(crate) async fn require_prepared_transactions(&self) -> Result<(), FabricError> {
        let row = self
            .connection
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT current_setting('max_prepared_transactions')::int AS n",
            ))
            .await
            .map_err(|e| unusable(&self.id, "reading max_prepared_transactions", e))?;
        let allowed: i32 = row
            .map(|row| row.try_get("", "n"))
            .transpose()
            .map_err(|e| unusable(&self.id, "reading max_prepared_transactions", e))?
            .unwrap_or(0);
        if allowed > 0 {
            return Ok(());
        }
        Err(FabricError::Database {
            database: self.id.clone(),
            reason: "max_prepared_transactions is 0, so this server cannot take part in a \
                     two-phase commit across databases: run \
                     `ALTER SYSTEM SET max_prepared_transactions = 64` (or set it in postgresql.conf) \
                     and restart PostgreSQL"
                .to_owned(),
        })
    }

    /// A single connection whose default schema is `boundary`, for its migrations: the
    /// boundary's file on SQLite, its database on MySQL, its schema first in the search
    /// path on PostgreSQL. Close it when done.
    pub(crate) async fn boundary_connection(
        &self,
        boundary: &Boundary,
        settings: &DatabaseSettings,
    ) -> Result<DatabaseConnection, FabricError> {
        let name = boundary.name();
        let pool = match &self.url {
            DatabaseUrl::Sqlite { dir } => SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.connect_timeout)
                .connect_with(sqlite_options(&dir.join(format!("{name}.db")), settings))
                .await
                .map(DatabaseConnection::from),
            DatabaseUrl::Postgres(_) => PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.connect_timeout)
                .connect_with(pg_options(&self.id, &self.url)?.options([("search_path", name)]))
                .await
                .map(DatabaseConnection::from),
            DatabaseUrl::MySql(_) => MySqlPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.connect_timeout)
                .connect_with(mysql_options(&self.id, &self.url)?.database(name))
                .await
                .map(DatabaseConnection::from),
        };
        pool.map_err(|e| unusable(&self.id, &format!("connecting for boundary `{name}`"), e))
    }
}

fn unusable(id: &DatabaseId, doing: &str, err: impl fmt::Display) -> FabricError {
    FabricError::Database {
        database: id.clone(),
        reason: format!("{doing}: {err}"),
    }
}

/// One connection made directly (not through a pool, whose timeout would hide the
/// cause), within the connect timeout: refused, unknown host and authentication
/// failures come back as the driver reports them.
async fn connect_once<C: sqlx::Connection>(
    options: &<C as sqlx::Connection>::Options,
    settings: &DatabaseSettings,
) -> Result<C, ConnectFailure> {
    match tokio::time::timeout(settings.connect_timeout, options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(ConnectFailure::Driver(err)),
        Err(_) => Err(ConnectFailure::TimedOut(settings.connect_timeout)),
    }
}

/// Why a direct connection failed.
#[derive(Debug)]
enum ConnectFailure {
    Driver(sqlx::Error),
    TimedOut(Duration),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver(err) => write!(f, "{err}"),
            Self::TimedOut(after) => write!(
                f,
                "no answer within {after:?} (database.connect_timeout): is the server up and reachable?"
            ),
        }
    }
}

fn pg_options(id: &DatabaseId, url: &DatabaseUrl) -> Result<PgConnectOptions, FabricError> {
    PgConnectOptions::from_str(&url.connection_string())
        .map_err(|e| unusable(id, "parsing the URL", e))
}

/// A lock wait longer than this fails; PostgreSQL reads the value in milliseconds.
fn lock_timeout_ms(settings: &DatabaseSettings) -> String {
    settings.lock_timeout.as_millis().max(1).to_string()
}

/// Connects the ordinary pool and the control pool (see [`CONTROL_POOL_SIZE`]).
async fn connect_postgres(
    id: &DatabaseId,
    url: &DatabaseUrl,
    boundaries: &[Boundary],
    settings: &DatabaseSettings,
) -> Result<(DatabaseConnection, DatabaseConnection), FabricError> {
    let options = pg_options(id, url)?.options([("lock_timeout", lock_timeout_ms(settings))]);
    match connect_once::<sqlx::PgConnection>(&options, settings).await {
        Ok(probe) => {
            probe.close().await.ok();
        }
        Err(ConnectFailure::Driver(err))
            if is_missing_postgres_database(&err) && settings.create_missing =>
        {
            create_postgres_database(id, &options, settings).await?;
        }
        Err(ConnectFailure::Driver(err)) if is_missing_postgres_database(&err) => {
            return Err(unusable(
                id,
                "connecting",
                format!("{err}; run `switchyard migrate up` (or serve) to create it"),
            ));
        }
        Err(err) => return Err(unusable(id, "connecting", err)),
    };
    let pool = |size| {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
    };
    let connection = DatabaseConnection::from(
        pool(POOL_SIZE)
            .await
            .map_err(|e| unusable(id, "connecting", e))?,
    );
    let control = DatabaseConnection::from(
        pool(CONTROL_POOL_SIZE)
            .await
            .map_err(|e| unusable(id, "connecting the control pool", e))?,
    );
    if settings.create_missing {
        for boundary in boundaries {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", boundary.name());
            if let Err(err) = connection.execute_unprepared(&sql).await {
                // Two instances starting at once may race on the same schema.
                if !schema_exists(&connection, boundary.name()).await {
                    return Err(unusable(
                        id,
                        &format!("creating schema `{}`", boundary.name()),
                        err,
                    ));
                }
            }
        }
    }
    Ok((connection, control))
}

async fn schema_exists(connection: &DatabaseConnection, schema: &str) -> bool {
    let stmt = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT 1 FROM pg_namespace WHERE nspname = $1",
        [schema.into()],
    );
    matches!(connection.query_one_raw(stmt).await, Ok(Some(_)))
}

fn is_missing_postgres_database(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

async fn create_postgres_database(
    id: &DatabaseId,
    options: &PgConnectOptions,
    settings: &DatabaseSettings,
) -> Result<(), FabricError> {
    let name = options.get_database().unwrap_or_default().to_owned();
    let advice = |err: &dyn fmt::Display| {
        unusable(
            id,
            &format!("database `{name}` does not exist and could not be created"),
            format!(
                "{err}; create it with `createdb {name}` (or `CREATE DATABASE \"{name}\"`) and start again"
            ),
        )
    };
    let mut admin =
        connect_once::<sqlx::PgConnection>(&options.clone().database("postgres"), settings)
            .await
            .map_err(|e| advice(&e))?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await {
        Ok(_) => {
            tracing::info!(database = %id, "created the PostgreSQL database");
            Ok(())
        }
        // Another instance created it first.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => Ok(()),
        Err(err) => Err(advice(&err)),
    }
}

fn mysql_options(id: &DatabaseId, url: &DatabaseUrl) -> Result<MySqlConnectOptions, FabricError> {
    MySqlConnectOptions::from_str(&url.connection_string())
        .map_err(|e| unusable(id, "parsing the URL", e))
}

async fn connect_mysql(
    id: &DatabaseId,
    url: &DatabaseUrl,
    boundaries: &[Boundary],
    settings: &DatabaseSettings,
) -> Result<DatabaseConnection, FabricError> {
    let options = mysql_options(id, url)?;
    // Each boundary is a database on the server; the URL's own database, if it names
    // one, is created as well so that the pool can use it as its default.
    let server = MySqlConnectOptions::from_str(&server_url(url))
        .map_err(|e| unusable(id, "parsing the URL", e))?;
    let mut server = connect_once::<sqlx::MySqlConnection>(&server, settings)
        .await
        .map_err(|e| unusable(id, "connecting", e))?;
    let mut databases: Vec<String> = options
        .get_database()
        .map(str::to_owned)
        .into_iter()
        .collect();
    databases.extend(boundaries.iter().map(|b| b.name().to_owned()));
    for database in &databases {
        let name = database.replace('`', "``");
        let sql = if settings.create_missing {
            format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        } else {
            format!("USE `{name}`")
        };
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut server)
            .await
            .map_err(|e| unusable(id, &format!("using database `{database}`"), e))?;
    }
    server.close().await.ok();
    // Whole seconds, at least one: MySQL's unit.
    let lock_wait = settings.lock_timeout.as_secs_f64().ceil().max(1.0);
    let set_lock_wait: Arc<str> =
        format!("SET SESSION innodb_lock_wait_timeout = {lock_wait:.0}").into();
    let pool = MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(move |conn, _meta| {
            let sql = Arc::clone(&set_lock_wait);
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| unusable(id, "connecting", e))?;
    Ok(DatabaseConnection::from(pool))
}

/// The server part of a MySQL URL, without a database.
fn server_url(url: &DatabaseUrl) -> String {
    let mut server =
        url::Url::parse(&url.connection_string()).expect("a parsed DatabaseUrl is a valid URL");
    server.set_path("");
    server.to_string()
}
