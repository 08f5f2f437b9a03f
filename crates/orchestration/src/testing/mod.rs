//! A database per test on SQLite, PostgreSQL and MariaDB, migrating only the boundaries
//! under test. Enabled by the `testing` feature; use it as a dev-dependency.
//!
//! Server URLs come from `SWITCHYARD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `SWITCHYARD_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306`). A test whose server is unreachable says so
//! on stderr and is skipped, unless `CI` is set: then it fails.
//!
//! MariaDB has no schema search path, and SeaORM qualifies every table with its
//! entity's schema, so on MariaDB a boundary's database must carry the boundary's own
//! name (`inventory`). Tests on one server therefore take turns: the harness holds a
//! server-wide lock (`GET_LOCK`) for the life of a [`TestDatabase`], and it drops and
//! recreates only databases it created itself (recorded in `switchyard_test.owned`),
//! refusing to touch a same-named database it did not create.
//!
//! [`Scenario`] stimulates the system and waits for an event or a state, with a
//! timeout and a failure message that shows what happened instead.

mod scenario;

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};

use crate::boundary::Boundary;
pub use crate::clock::{Clock, TimeMachine};
use crate::database::DatabaseSettings;
use crate::fabric::Fabric;
pub use crate::fault::{PAUSE_AT_VAR, PAUSED, pause_point};
use crate::topology::{DatabaseUrl, Topology};
pub use scenario::{DEFAULT_TIMEOUT, Scenario, Stimulated};

/// The engines a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Files in a temporary directory.
    Sqlite,
    /// A uniquely named database on the test server, dropped afterwards.
    Postgres,
    /// The boundaries' databases on the test server, one test at a time.
    MariaDb,
}

/// A connected, migrated database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    engine: Engine,
    topology: Topology,
    boundaries: Vec<Boundary>,
    fabric: Fabric,
    cleanup: Option<Cleanup>,
}

#[derive(Debug)]
enum Cleanup {
    /// Removed with its files when dropped.
    TempDir { _dir: tempfile::TempDir },
    Postgres {
        admin: PgConnectOptions,
        name: String,
    },
    MariaDb {
        server: MySqlConnectOptions,
        databases: Vec<String>,
        /// Holds the server-wide test lock; closing it releases the lock.
        lock: Option<sqlx::MySqlConnection>,
    },
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MARIADB_LOCK: &str = "switchyard_test";

/// Whether this run is CI (the `CI` environment variable is set and not `false`/`0`).
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The PostgreSQL server tests use (a URL naming its maintenance database).
#[must_use]
pub fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The MariaDB/MySQL server tests use.
#[must_use]
pub fn mysql_url() -> String {
    std::env::var("SWITCHYARD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

impl TestDatabase {
    /// A fresh database on `engine` with `boundaries` connected and migrated.
    ///
    /// Returns `None` (after saying so on stderr) when the engine's server is
    /// unreachable outside CI.
    ///
    /// # Panics
    /// When the server is unreachable in CI, or when setting up or migrating fails:
    /// a test cannot go on without its database.
    pub async fn create(
        engine: Engine,
        boundaries: impl IntoIterator<Item = Boundary>,
    ) -> Option<Self> {
        let boundaries: Vec<Boundary> = boundaries.into_iter().collect();
        let (url, cleanup) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let url = DatabaseUrl::Sqlite {
                    dir: dir.path().to_owned(),
                };
                (url, Cleanup::TempDir { _dir: dir })
            }
            Engine::Postgres => create_postgres().await?,
            Engine::MariaDb => create_mariadb(&boundaries).await?,
        };
        let topology = Topology::new(url);
        let fabric = Fabric::connect(&topology, boundaries.iter().copied())
            .await
            .unwrap_or_else(|e| panic!("connect the test fabric on {engine:?}: {e}"));
        fabric
            .databases()
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate the test fabric on {engine:?}: {e}"));
        Some(Self {
            engine,
            topology,
            boundaries,
            fabric,
            cleanup: Some(cleanup),
        })
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The connected, migrated fabric.
    #[must_use]
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// Another fabric on this database, with the same boundaries, whose every part
    /// reads `clock`: with [`Clock::manual`], a test moves time forward and sees holds
    /// expire, leases run out, retries come due and schedules tick, without sleeping.
    ///
    /// # Panics
    /// When connecting fails.
    pub async fn fabric_with_clock(&self, clock: Clock) -> Fabric {
        let settings = DatabaseSettings {
            clock,
            ..DatabaseSettings::default()
        };
        Fabric::connect_with(&self.topology, &settings, self.boundaries.iter().copied())
            .await
            .unwrap_or_else(|e| panic!("connect a fabric on {:?}: {e}", self.engine))
    }

    /// A [`Scenario`] on this database's fabric: stimulate, then wait for an event or
    /// a state.
    #[must_use]
    pub fn scenario(&self) -> Scenario<'_> {
        Scenario::new(&self.fabric)
    }

    /// The topology, to point another fabric (or the app) at the same database.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The connection pool holding `boundary`.
    ///
    /// # Panics
    /// If `boundary` was not given to [`TestDatabase::create`].
    #[must_use]
    pub fn connection(&self, boundary: &str) -> &DatabaseConnection {
        self.fabric
            .connection(boundary)
            .expect("a boundary under test")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.cleanup.take() {
            None | Some(Cleanup::TempDir { .. }) => {}
            Some(Cleanup::Postgres { admin, name }) => on_fresh_runtime(async move {
                let mut conn = admin.connect().await?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                conn.execute(AssertSqlSafe(sql)).await?;
                Ok(())
            }),
            Some(Cleanup::MariaDb {
                server,
                databases,
                lock,
            }) => {
                on_fresh_runtime(async move {
                    let mut conn = server.connect().await?;
                    for database in databases {
                        conn.execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS `{database}`"
                        )))
                        .await?;
                    }
                    Ok(())
                });
                // Dropping the lock connection closes its socket: the server releases
                // the lock for the next test.
                drop(lock);
            }
        }
    }
}

/// Runs async cleanup from `Drop`, on its own thread and runtime so it works whichever
/// runtime (if any) the test used.
fn on_fresh_runtime(cleanup: impl Future<Output = Result<(), sqlx::Error>> + Send + 'static) {
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a cleanup runtime")
            .block_on(cleanup)
    })
    .join();
    if let Ok(Err(err)) = outcome {
        eprintln!("switchyard test harness: cleanup failed: {err}");
    }
}

/// Says loudly that `engine` is unreachable; in CI, fails the test instead.
fn unreachable_server(engine: &str, url: &str, err: &dyn std::fmt::Display) {
    let message =
        format!("{engine} at {url} is unreachable ({err}); start it or point the tests elsewhere");
    assert!(!in_ci(), "{message} (CI is set, so this test fails)");
    // Straight to stderr rather than `eprintln!`, which the test runner captures and
    // hides for passing tests: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED on {engine}: {message} ***\n"
    );
}

async fn create_postgres() -> Option<(DatabaseUrl, Cleanup)> {
    let url = postgres_url();
    let admin = PgConnectOptions::from_str(&url).expect("a valid SWITCHYARD_TEST_POSTGRES_URL");
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, admin.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => return skip("PostgreSQL", &url, &err),
        Err(err) => return skip("PostgreSQL", &url, &err),
    };
    let name = format!("switchyard_test_{}", uuid::Uuid::new_v4().simple());
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
    conn.close().await.ok();
    let mut test_url = url::Url::parse(&url).expect("a valid SWITCHYARD_TEST_POSTGRES_URL");
    test_url.set_path(&name);
    let database = DatabaseUrl::from_str(test_url.as_str()).expect("a PostgreSQL URL");
    Some((database, Cleanup::Postgres { admin, name }))
}

fn skip<T>(engine: &str, url: &str, err: &dyn std::fmt::Display) -> Option<T> {
    unreachable_server(engine, url, err);
    None
}

async fn create_mariadb(boundaries: &[Boundary]) -> Option<(DatabaseUrl, Cleanup)> {
    let url = mysql_url();
    let server = MySqlConnectOptions::from_str(&url).expect("a valid SWITCHYARD_TEST_MYSQL_URL");
    let mut lock = match tokio::time::timeout(CONNECT_TIMEOUT, server.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => return skip("MariaDB", &url, &err),
        Err(err) => return skip("MariaDB", &url, &err),
    };
    let (acquired,): (Option<i64>,) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT GET_LOCK('{MARIADB_LOCK}', 600)"
    )))
    .fetch_one(&mut lock)
    .await
    .expect("take the MariaDB test lock");
    assert_eq!(
        acquired,
        Some(1),
        "timed out waiting for the MariaDB test lock"
    );

    let mut conn = server.connect().await.expect("connect to MariaDB");
    conn.execute(
        "CREATE DATABASE IF NOT EXISTS switchyard_test; \
         CREATE TABLE IF NOT EXISTS switchyard_test.owned (name VARCHAR(64) PRIMARY KEY)",
    )
    .await
    .expect("create the harness's registry");
    let mut databases = Vec::new();
    // The fabric adds its outbox beside the boundaries.
    for boundary in boundaries
        .iter()
        .copied()
        .chain([crate::schema::outbox::boundary()])
    {
        let name = boundary.name().to_owned();
        let exists: Option<(String,)> = sqlx::query_as(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
        )
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .expect("look up databases");
        let owned: Option<(String,)> =
            sqlx::query_as("SELECT name FROM switchyard_test.owned WHERE name = ?")
                .bind(&name)
                .fetch_optional(&mut conn)
                .await
                .expect("read the harness's registry");
        assert!(
            exists.is_none() || owned.is_some(),
            "the MariaDB test server at {url} has a database `{name}` that the Switchyard test \
             harness did not create; refusing to drop it. Point SWITCHYARD_TEST_MYSQL_URL at a \
             disposable server, or drop the database yourself."
        );
        conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
            .await
            .expect("drop a leftover test database");
        sqlx::query("INSERT IGNORE INTO switchyard_test.owned (name) VALUES (?)")
            .bind(&name)
            .execute(&mut conn)
            .await
            .expect("record a test database");
        databases.push(name);
    }
    conn.close().await.ok();
    let database = DatabaseUrl::from_str(&url).expect("a MySQL URL");
    Some((
        database,
        Cleanup::MariaDb {
            server,
            databases,
            lock: Some(lock),
        },
    ))
}

/// Generates one `#[tokio::test]` per engine for each named test function.
///
/// Each function takes a [`TestDatabase`] with the given boundaries migrated. The
/// boundary expressions are evaluated inside generated modules that see the caller's
/// items:
///
/// ```text
/// orchestration::engine_tests! {
///     boundaries: [migrations::inventory()];
///     reserve_never_oversells, release_returns_stock,
/// }
/// async fn reserve_never_oversells(db: TestDatabase) { /* … */ }
/// ```
#[macro_export]
macro_rules! engine_tests {
    (boundaries: $boundaries:tt; $($test:ident),+ $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::engine_tests!(@one Sqlite, $test, $boundaries); )+
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::engine_tests!(@one Postgres, $test, $boundaries); )+
        }
        mod mariadb {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::engine_tests!(@one MariaDb, $test, $boundaries); )+
        }
    };
    (@one $engine:ident, $test:ident, $boundaries:tt) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            let engine = $crate::testing::Engine::$engine;
            if let Some(db) = $crate::testing::TestDatabase::create(engine, $boundaries).await {
                super::$test(db).await;
            }
        }
    };
}
