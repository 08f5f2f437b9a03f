//! One physical database: connecting to it on each engine, laying out its boundaries
//! (schemas, databases or attached files), and opening a boundary-scoped connection
//! for migrations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    StatementBuilder, TransactionOptions, TransactionTrait,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions};

use crate::boundary::Boundary;
use crate::error::FabricError;
use crate::topology::DatabaseUrl;

/// The database engines Switchyard runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, one file per boundary, attached together.
    Sqlite,
    /// PostgreSQL, one schema per boundary.
    Postgres,
    /// MySQL or MariaDB, one database per boundary.
    MySql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        })
    }
}

/// The identity of a database: its URL without the password. Safe to log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatabaseId(Arc<str>);

impl DatabaseId {
    pub(crate) fn new(display: String) -> Self {
        Self(display.into())
    }
}

impl fmt::Display for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseId({})", self.0)
    }
}

/// Pool settings shared by every engine.
const POOL_SIZE: u32 = 16;
/// SQLite has one writer at a time; more connections only add lock contention.
const SQLITE_POOL_SIZE: u32 = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SQLite statement waits for another connection's lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The SQLite file that anchors multi-file commits. It must be a real file: SQLite only
/// makes a commit across attached files atomic when the main database is not in memory.
const SQLITE_MAIN_FILE: &str = "switchyard.db";

/// A connected database and the boundaries it holds.
#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) id: DatabaseId,
    pub(crate) url: DatabaseUrl,
    pub(crate) connection: DatabaseConnection,
    pub(crate) boundaries: Vec<Boundary>,
}

impl Database {
    /// Connects to `url` and lays out `boundaries` on it (creating the database,
    /// schemas or files that are missing).
    pub(crate) async fn connect(
        url: DatabaseUrl,
        boundaries: Vec<Boundary>,
    ) -> Result<Self, FabricError> {
        let id = url.id();
        let connection = match &url {
            DatabaseUrl::Sqlite { dir } => connect_sqlite(&id, dir, &boundaries).await?,
            DatabaseUrl::Postgres(_) => connect_postgres(&id, &url, &boundaries).await?,
            DatabaseUrl::MySql(_) => connect_mysql(&id, &url, &boundaries).await?,
        };
        Ok(Self {
            id,
            url,
            connection,
            boundaries,
        })
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
    ) -> Result<DatabaseConnection, FabricError> {
        let name = boundary.name();
        let pool = match &self.url {
            DatabaseUrl::Sqlite { dir } => SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(sqlite_options(&dir.join(format!("{name}.db"))))
                .await
                .map(DatabaseConnection::from),
            DatabaseUrl::Postgres(_) => PgPoolOptions::new()
                .max_connections(1)
                .connect_with(pg_options(&self.id, &self.url)?.options([("search_path", name)]))
                .await
                .map(DatabaseConnection::from),
            DatabaseUrl::MySql(_) => MySqlPoolOptions::new()
                .max_connections(1)
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

fn sqlite_options(file: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        // A rollback journal, not WAL: only with a rollback journal does SQLite commit a
        // transaction across attached files atomically (FACTS.md measured WAL tearing
        // such commits under kill). The price is throughput and readers that wait for
        // writers; see ARCHITECTURE.md.
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
}

async fn connect_sqlite(
    id: &DatabaseId,
    dir: &Path,
    boundaries: &[Boundary],
) -> Result<DatabaseConnection, FabricError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| unusable(id, &format!("creating directory {}", dir.display()), e))?;
    let dir: PathBuf = dir
        .canonicalize()
        .map_err(|e| unusable(id, &format!("resolving directory {}", dir.display()), e))?;
    // ATTACH is per connection, so it runs on every connection the pool opens. The
    // journal mode is per attached schema and must be set on each one too.
    let mut attach = String::new();
    for boundary in boundaries {
        let name = boundary.name();
        let file = dir.join(format!("{name}.db"));
        let file = file.to_string_lossy().replace('\'', "''");
        attach.push_str(&format!(
            "ATTACH DATABASE '{file}' AS \"{name}\"; PRAGMA \"{name}\".journal_mode = DELETE; PRAGMA \"{name}\".synchronous = FULL;\n"
        ));
    }
    let attach: Arc<str> = attach.into();
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            let attach = Arc::clone(&attach);
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(attach)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(sqlite_options(&dir.join(SQLITE_MAIN_FILE)))
        .await
        .map_err(|e| unusable(id, "opening the SQLite files", e))?;
    Ok(DatabaseConnection::from(pool))
}

fn pg_options(id: &DatabaseId, url: &DatabaseUrl) -> Result<PgConnectOptions, FabricError> {
    PgConnectOptions::from_str(&url.connection_string())
        .map_err(|e| unusable(id, "parsing the URL", e))
}

async fn connect_postgres(
    id: &DatabaseId,
    url: &DatabaseUrl,
    boundaries: &[Boundary],
) -> Result<DatabaseConnection, FabricError> {
    let options = pg_options(id, url)?;
    let pool_options = || {
        PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
    };
    let pool = match pool_options().connect_with(options.clone()).await {
        Ok(pool) => pool,
        Err(err) if is_missing_postgres_database(&err) => {
            create_postgres_database(id, &options).await?;
            pool_options()
                .connect_with(options)
                .await
                .map_err(|e| unusable(id, "connecting", e))?
        }
        Err(err) => return Err(unusable(id, "connecting", err)),
    };
    let connection = DatabaseConnection::from(pool);
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
    Ok(connection)
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
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
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
) -> Result<DatabaseConnection, FabricError> {
    let options = mysql_options(id, url)?;
    // Each boundary is a database on the server; the URL's own database, if it names
    // one, is created as well so that the pool can use it as its default.
    let mut server = MySqlConnectOptions::from_str(&server_url(url))
        .map_err(|e| unusable(id, "parsing the URL", e))?
        .connect()
        .await
        .map_err(|e| unusable(id, "connecting", e))?;
    let mut databases: Vec<String> = options
        .get_database()
        .map(str::to_owned)
        .into_iter()
        .collect();
    databases.extend(boundaries.iter().map(|b| b.name().to_owned()));
    for database in &databases {
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4",
            database.replace('`', "``")
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut server)
            .await
            .map_err(|e| unusable(id, &format!("creating database `{database}`"), e))?;
    }
    let pool = MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
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

/// Builds `statement` for `db`'s engine and runs it; the rows it affected.
pub(crate) async fn execute(
    db: &impl ConnectionTrait,
    statement: &impl StatementBuilder,
) -> Result<u64, DbErr> {
    let statement = db.get_database_backend().build(statement);
    Ok(db.execute_raw(statement).await?.rows_affected())
}

/// Begins a transaction that will write. On SQLite it is IMMEDIATE: it takes the
/// write lock at BEGIN, so one that reads and then writes never fails halfway with
/// `database is locked` (a DEFERRED one does, at once, if another connection began
/// writing meanwhile). On PostgreSQL and MySQL it is an ordinary transaction.
///
/// # Errors
/// The database could not begin one.
pub async fn begin_write(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
