//! The fabric on every engine, with two throwaway boundaries (`alpha`, `beta`) that
//! each hold a `notes` table: units of work commit every step or none, summaries say
//! what ran, split databases are refused before anything runs.

use orchestration::testing::{Engine, TestDatabase};
use orchestration::{
    Boundary, DatabaseUrl, Fabric, FabricError, Topology, UnitOfWork, UnitOfWorkError,
    databases::CommitPlan, unit_of_work::Outcome,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement};

mod host;
mod outbox;
mod saga;

mod notes {
    //! One migration creating `notes (id, body)`.
    use sea_orm_migration::prelude::*;

    #[derive(DeriveMigrationName)]
    pub(crate) struct Migration;

    #[derive(DeriveIden)]
    enum Notes {
        Table,
        Id,
        Body,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Notes::Table)
                        .col(
                            ColumnDef::new(Notes::Id)
                                .integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
                        .col(ColumnDef::new(Notes::Body).string_len(100).not_null())
                        .to_owned(),
                )
                .await
        }
    }

    #[derive(Debug)]
    pub(crate) struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(Migration)]
        }
    }
}

/// Twenty boundaries, each with a `notes` table: more than the bundled SQLite's
/// default of ten attached files.
const MODULES: [&str; 20] = [
    "m01", "m02", "m03", "m04", "m05", "m06", "m07", "m08", "m09", "m10", "m11", "m12", "m13",
    "m14", "m15", "m16", "m17", "m18", "m19", "m20",
];

#[tokio::test]
async fn twenty_modules_on_sqlite_commit_together_or_not_at_all() {
    let boundaries = std::iter::once(orchestration::schema::boundary()).chain(
        MODULES
            .iter()
            .map(|&name| Boundary::new::<notes::Migrator>(name)),
    );
    let db = TestDatabase::create(Engine::Sqlite, boundaries)
        .await
        .expect("SQLite is embedded");
    let fabric = db.fabric();
    let insert_all = async |uow: &mut UnitOfWork<TestError>| -> Result<(), TestError> {
        for module in MODULES {
            uow.step(module, "insert", async |tx| insert(tx, module).await)
                .await?;
        }
        Ok(())
    };
    let done = fabric
        .unit_of_work("write_twenty")
        .run(async |uow| insert_all(uow).await)
        .await
        .unwrap();
    let CommitPlan::Local { boundaries, .. } = &done.summary.plan else {
        panic!(
            "twenty files in one directory commit locally: {}",
            done.summary.plan
        );
    };
    assert_eq!(boundaries.len(), 20);
    let failed = fabric
        .unit_of_work("give_up")
        .run(async |uow| -> Result<(), TestError> {
            insert_all(uow).await?;
            Err(TestError::GaveUp)
        })
        .await;
    assert!(matches!(failed, Err(TestError::GaveUp)));
    for module in MODULES {
        let connection = fabric.connection(module).unwrap();
        let count = connection
            .query_one_raw(Statement::from_string(
                connection.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM \"{module}\".notes"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(count, 1, "{module}: the first run's row, not the second's");
    }
}

fn alpha() -> Boundary {
    Boundary::new::<notes::Migrator>("alpha")
}

fn beta() -> Boundary {
    Boundary::new::<notes::Migrator>("beta")
}

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Import(#[from] orchestration::import::ImportError),
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    #[error("the work gave up")]
    GaveUp,
}

async fn insert(tx: &DatabaseTransaction, boundary: &str) -> Result<u64, DbErr> {
    let sql = format!("INSERT INTO {boundary}.notes (body) VALUES ('hello')");
    Ok(tx.execute_unprepared(&sql).await?.rows_affected())
}

/// Steps `insert_alpha` then `insert_beta`, one note each; the rows inserted.
async fn insert_both(uow: &mut UnitOfWork<TestError>) -> Result<u64, TestError> {
    let alpha = uow
        .step("alpha", "insert_alpha", async |tx| {
            insert(tx, "alpha").await
        })
        .await?;
    let beta = uow
        .step("beta", "insert_beta", async |tx| insert(tx, "beta").await)
        .await?;
    Ok(alpha + beta)
}

async fn count(fabric: &Fabric, boundary: &str) -> i64 {
    let db = fabric.connection(boundary).unwrap();
    count_of(db, format!("SELECT COUNT(*) AS n FROM {boundary}.notes")).await
}

/// The `n` of a `SELECT COUNT(*) AS n …`.
async fn count_of(db: &DatabaseConnection, sql: String) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

orchestration::engine_tests! {
    boundaries: [alpha(), beta()];
    a_unit_of_work_commits_every_step_or_none,
    each_boundary_keeps_its_own_migration_history,
}

async fn a_unit_of_work_commits_every_step_or_none(db: TestDatabase) {
    let fabric = db.fabric();
    let done = fabric
        .unit_of_work("write_both")
        .run(async |uow| -> Result<_, TestError> { insert_both(uow).await })
        .await
        .unwrap();
    assert_eq!(done.value, 2);
    let summary = &done.summary;
    assert_eq!(summary.pipeline, "write_both");
    assert_eq!(summary.outcome, Outcome::Committed);
    let steps: Vec<_> = summary
        .steps
        .iter()
        .map(|s| (s.name, s.boundary, s.succeeded))
        .collect();
    assert_eq!(
        steps,
        [
            ("insert_alpha", "alpha", true),
            ("insert_beta", "beta", true)
        ]
    );
    let CommitPlan::Local { boundaries, .. } = &summary.plan else {
        panic!("expected a local plan, got {}", summary.plan);
    };
    assert_eq!(boundaries, &["alpha", "beta"]);
    let shown = summary.to_string();
    assert!(shown.starts_with("write_both committed"), "{shown}");
    assert!(
        shown.contains("alpha.insert_alpha") && shown.contains("beta.insert_beta"),
        "{shown}"
    );

    // A run whose work fails after both writes persists neither.
    let failed = fabric
        .unit_of_work("give_up")
        .run(async |uow| -> Result<(), TestError> {
            insert_both(uow).await?;
            Err(TestError::GaveUp)
        })
        .await;
    assert!(matches!(failed, Err(TestError::GaveUp)));
    // So does one whose step fails in the database.
    let failed = fabric
        .unit_of_work("bad_sql")
        .run(async |uow| -> Result<(), TestError> {
            uow.step("alpha", "insert_alpha", async |tx| {
                insert(tx, "alpha").await
            })
            .await?;
            uow.step("beta", "bad_insert", async |tx| {
                tx.execute_unprepared("INSERT INTO beta.notes (nope) VALUES (1)")
                    .await
            })
            .await?;
            Ok(())
        })
        .await;
    assert!(matches!(failed, Err(TestError::Db(_))), "{failed:?}");
    assert_eq!(
        (count(fabric, "alpha").await, count(fabric, "beta").await),
        (1, 1)
    );

    let err = fabric
        .unit_of_work("typo")
        .run(async |uow| -> Result<(), TestError> {
            uow.step("gamma", "insert", async |tx| insert(tx, "gamma").await)
                .await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, TestError::UnitOfWork(UnitOfWorkError::UnknownBoundary { ref boundary }) if boundary == "gamma"),
        "{err}"
    );
}

async fn each_boundary_keeps_its_own_migration_history(db: TestDatabase) {
    let states = db.fabric().databases().migration_status().await.unwrap();
    let summary: Vec<_> = states
        .iter()
        .map(|s| (s.boundary, s.applied.len(), s.pending.len()))
        .collect();
    // The fabric's outbox is migrated like a boundary, after the registered ones.
    assert_eq!(summary, [("alpha", 1, 0), ("beta", 1, 0), ("outbox", 2, 0)]);
    for (boundary, migrations) in [("alpha", 1), ("beta", 1), ("outbox", 2)] {
        let sql = format!("SELECT COUNT(*) AS n FROM {boundary}.seaql_migrations");
        assert_eq!(
            count_of(db.connection(boundary), sql).await,
            migrations,
            "{boundary}"
        );
    }
    // Migrating again is a no-op.
    assert_eq!(db.fabric().databases().migrate().await.unwrap(), states);
}

#[tokio::test]
async fn boundaries_on_two_databases_are_refused_before_anything_runs() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let topology = Topology::new(DatabaseUrl::Sqlite {
        dir: one.path().to_owned(),
    })
    .with_override(
        "beta",
        DatabaseUrl::Sqlite {
            dir: two.path().to_owned(),
        },
    );
    let fabric = Fabric::connect(&topology, [alpha(), beta()]).await.unwrap();
    fabric.databases().migrate().await.unwrap();

    assert!(matches!(
        fabric.databases().plan(&["alpha"]),
        Ok(CommitPlan::Local { .. })
    ));
    let Err(UnitOfWorkError::NotAtomic { locations, reason }) =
        fabric.databases().plan(&["alpha", "beta"])
    else {
        panic!("two databases must not plan as one transaction");
    };
    assert!(reason.contains("SQLite files"), "{reason}");
    assert_eq!(locations.len(), 2);
    assert_ne!(locations[0].database, locations[1].database);

    let mut beta_ran = false;
    let err = fabric
        .unit_of_work("across")
        .run(async |uow| -> Result<(), TestError> {
            uow.step("alpha", "insert_alpha", async |tx| {
                insert(tx, "alpha").await
            })
            .await?;
            uow.step("beta", "insert_beta", async |tx| {
                beta_ran = true;
                insert(tx, "beta").await
            })
            .await?;
            Ok(())
        })
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            TestError::UnitOfWork(UnitOfWorkError::NotAtomic { .. })
        ),
        "{message}"
    );
    assert!(
        message.contains("alpha on sqlite://") && message.contains("beta on sqlite://"),
        "{message}"
    );
    assert!(!beta_ran, "the refused step must not run");
    assert_eq!(
        (count(&fabric, "alpha").await, count(&fabric, "beta").await),
        (0, 0)
    );
}

#[tokio::test]
async fn bad_registrations_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::new(DatabaseUrl::Sqlite {
        dir: dir.path().to_owned(),
    });
    let err = Fabric::connect(&topology, [alpha(), alpha()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, FabricError::DuplicateBoundary("alpha")),
        "{err}"
    );
    let err = Fabric::connect(&topology, [Boundary::new::<notes::Migrator>("Bad-Name")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, FabricError::InvalidBoundaryName("Bad-Name")),
        "{err}"
    );
    let elsewhere = topology.clone().with_override(
        "gamma",
        DatabaseUrl::Sqlite {
            dir: dir.path().join("g"),
        },
    );
    let err = Fabric::connect(&elsewhere, [alpha()]).await.unwrap_err();
    assert!(
        matches!(err, FabricError::UnknownBoundary { ref name, .. } if name == "gamma"),
        "{err}"
    );
    let fabric = Fabric::connect(&topology, [alpha()]).await.unwrap();
    assert!(matches!(
        fabric.databases().plan(&["nope"]),
        Err(UnitOfWorkError::UnknownBoundary { .. })
    ));
}

/// A PostgreSQL URL naming a database that does not exist: the fabric creates it.
#[tokio::test]
async fn a_missing_postgres_database_is_created() {
    use sqlx::{ConnectOptions, Executor};
    // The harness decides whether the server is reachable (and fails in CI if not).
    let Some(server) = TestDatabase::create(Engine::Postgres, []).await else {
        return;
    };
    let mut url = url::Url::parse(&server.topology().default_url().connection_string()).unwrap();
    let name = format!("{}_created", url.path().trim_start_matches('/'));
    url.set_path(&name);
    let fabric = Fabric::connect(&Topology::new(url.as_str().parse().unwrap()), [alpha()])
        .await
        .unwrap();
    fabric.databases().migrate().await.unwrap();
    assert_eq!(count(&fabric, "alpha").await, 0);
    fabric.close().await;

    let admin: sqlx::postgres::PgConnectOptions =
        orchestration::testing::postgres_url().parse().unwrap();
    let mut admin = admin.connect().await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{name}\" WITH (FORCE)"
        )))
        .await
        .unwrap();
}

/// A super-journal left by a crash in the middle of a commit across SQLite files is
/// removed at the next connect, once every file's hot journal was rolled back.
#[tokio::test]
async fn an_orphan_sqlite_super_journal_is_removed_at_connect() {
    let db = TestDatabase::create(Engine::Sqlite, [alpha()])
        .await
        .expect("SQLite is embedded");
    let orchestration::DatabaseUrl::Sqlite { dir } = db.topology().default_url() else {
        unreachable!("a SQLite test database")
    };
    let orphan = dir.join("switchyard.db-mj5A1B2C3D");
    std::fs::write(&orphan, b"alpha.db\0").unwrap();
    let fabric = Fabric::connect(db.topology(), [alpha()]).await.unwrap();
    assert!(!orphan.exists(), "the orphan super-journal is still there");
    assert_eq!(count(&fabric, "alpha").await, 0);
    fabric.close().await;
}

/// `alpha` (with the coordinator log) on one PostgreSQL database, `beta` on another.
/// `None` when PostgreSQL is unreachable outside CI.
async fn split_postgres() -> Option<(Fabric, TestDatabase, TestDatabase)> {
    let one = TestDatabase::create(
        Engine::Postgres,
        [orchestration::schema::boundary(), alpha()],
    )
    .await?;
    let two = TestDatabase::create(Engine::Postgres, [beta()]).await?;
    let topology = one
        .topology()
        .clone()
        .with_override("beta", two.topology().default_url().clone());
    let fabric = Fabric::connect(
        &topology,
        [orchestration::schema::boundary(), alpha(), beta()],
    )
    .await
    .unwrap();
    Some((fabric, one, two))
}

async fn our_prepared(fabric: &Fabric, boundary: &str) -> i64 {
    let sql = "SELECT COUNT(*) AS n FROM pg_prepared_xacts \
               WHERE database = current_database() AND gid LIKE 'sy:%'";
    count_of(fabric.connection(boundary).unwrap(), sql.to_owned()).await
}

#[tokio::test]
async fn two_postgres_databases_commit_in_two_phases_or_not_at_all() {
    let Some((fabric, _one, _two)) = split_postgres().await else {
        return;
    };
    let Ok(CommitPlan::TwoPhase { participants, .. }) = fabric.databases().plan(&["alpha", "beta"])
    else {
        panic!("two PostgreSQL databases plan a two-phase commit");
    };
    assert_eq!(participants.len(), 2);
    // A fabric registers as a live instance only once it prepares something.
    let instances = "SELECT COUNT(*) AS n FROM orchestration.instances".to_owned();
    let coordinator = fabric.connection("alpha").unwrap();
    assert_eq!(count_of(coordinator, instances.clone()).await, 0);

    let done = fabric
        .unit_of_work("across")
        .run(async |uow| -> Result<_, TestError> {
            insert_both(uow).await?;
            Ok(())
        })
        .await
        .unwrap();
    assert!(
        matches!(done.summary.plan, CommitPlan::TwoPhase { .. }),
        "{}",
        done.summary
    );
    assert!(
        done.summary.to_string().contains("two-phase commit"),
        "{}",
        done.summary
    );
    assert_eq!(count_of(coordinator, instances).await, 1);

    // A step failing on either participant rolls both back.
    for failing in ["alpha", "beta"] {
        let failed = fabric
            .unit_of_work("across_failing")
            .run(async |uow| -> Result<(), TestError> {
                insert_both(uow).await?;
                uow.step(failing, "bad_insert", async |tx| {
                    let sql = format!("INSERT INTO {failing}.notes (nope) VALUES (1)");
                    tx.execute_unprepared(&sql).await
                })
                .await?;
                Ok(())
            })
            .await;
        assert!(matches!(failed, Err(TestError::Db(_))), "{failed:?}");
    }
    assert_eq!(
        (count(&fabric, "alpha").await, count(&fabric, "beta").await),
        (1, 1)
    );
    assert_eq!(
        our_prepared(&fabric, "alpha").await + our_prepared(&fabric, "beta").await,
        0
    );
    let report =
        orchestration::two_phase::recover_in_doubt(fabric.databases(), std::time::Duration::ZERO)
            .await
            .unwrap();
    assert!(report.is_empty(), "{report}");
}

/// Prepared transactions left by a crash: the one whose run decided to commit is
/// committed; an undecided one of a live instance is rolled back once it is older
/// than the timeout, one of an instance that is gone (no heartbeat) at once.
#[tokio::test]
async fn recovery_resolves_what_a_crash_left_in_doubt() {
    let Some((fabric, _one, _two)) = split_postgres().await else {
        return;
    };
    let alpha_db = fabric.connection("alpha").unwrap();
    let beta_db = fabric.connection("beta").unwrap();
    // Instance "test" heartbeats; instance "gone" stopped a minute ago.
    alpha_db
        .execute_unprepared(
            "INSERT INTO orchestration.instances (instance_id, started_at, heartbeat_at) \
             VALUES ('test', now(), now()), ('gone', now(), now() - interval '1 minute')",
        )
        .await
        .unwrap();
    // Run "decided": both participants prepared and the decision logged.
    // Runs "undecided" and "orphaned": prepared, no decision.
    for (db, boundary, gid) in [
        (alpha_db, "alpha", "sy:test:decided:0"),
        (beta_db, "beta", "sy:test:decided:1"),
        (alpha_db, "alpha", "sy:test:undecided:0"),
        (beta_db, "beta", "sy:gone:orphaned:0"),
    ] {
        let sql = format!(
            "BEGIN; INSERT INTO {boundary}.notes (body) VALUES ('{gid}'); PREPARE TRANSACTION '{gid}';"
        );
        db.execute_unprepared(&sql).await.unwrap();
    }
    alpha_db
        .execute_unprepared(
            "INSERT INTO orchestration.two_phase_decisions (run_id, decision, participants, decided_at) \
             VALUES ('decided', 'commit', 'sy:test:decided:0,sy:test:decided:1', now())",
        )
        .await
        .unwrap();

    // Too young to give up on: the live instance's undecided one waits; the gone
    // instance's is rolled back.
    let report = orchestration::two_phase::recover_in_doubt(
        fabric.databases(),
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(report.committed.len(), 2, "{report:?}");
    assert_eq!(report.pending, ["sy:test:undecided:0"]);
    assert_eq!(report.rolled_back, ["sy:gone:orphaned:0"]);
    let report =
        orchestration::two_phase::recover_in_doubt(fabric.databases(), std::time::Duration::ZERO)
            .await
            .unwrap();
    assert_eq!(report.rolled_back, ["sy:test:undecided:0"]);
    assert_eq!(
        (count(&fabric, "alpha").await, count(&fabric, "beta").await),
        (1, 1)
    );
    assert_eq!(
        our_prepared(&fabric, "alpha").await + our_prepared(&fabric, "beta").await,
        0
    );
    let left = alpha_db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT run_id, decision FROM orchestration.two_phase_decisions ORDER BY run_id",
        ))
        .await
        .unwrap();
    // The commit decision is resolved and removed; the abort is kept for late coordinators.
    let left: Vec<(String, String)> = left
        .iter()
        .map(|r| {
            (
                r.try_get("", "run_id").unwrap(),
                r.try_get("", "decision").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        left,
        [
            ("orphaned".to_owned(), "abort".to_owned()),
            ("undecided".to_owned(), "abort".to_owned())
        ]
    );
}

#[tokio::test]
async fn mixed_engines_are_refused_with_a_typed_error() {
    let Some(postgres) = TestDatabase::create(Engine::Postgres, [beta()]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::new(DatabaseUrl::Sqlite {
        dir: dir.path().to_owned(),
    })
    .with_override("beta", postgres.topology().default_url().clone());
    let fabric = Fabric::connect(&topology, [alpha(), beta()]).await.unwrap();
    let Err(UnitOfWorkError::NotAtomic { locations, reason }) =
        fabric.databases().plan(&["alpha", "beta"])
    else {
        panic!("SQLite and PostgreSQL cannot commit together");
    };
    assert!(reason.contains("different engines"), "{reason}");
    assert_eq!(locations.len(), 2);
}

mod batches {
    //! SQL and batch steps, and resumable imports, on every engine.
    use orchestration::testing::{Engine, TestDatabase};
    use orchestration::{
        batch::{Batch, BatchOptions, Upsert},
        import::{Import, ImportError},
    };
    use sea_orm::Value;

    use super::{TestError, alpha, count};

    orchestration::engine_tests! {
        boundaries: [orchestration::schema::boundary(), alpha()];
        sql_and_batch_steps_report_their_rows,
        an_interrupted_import_resumes_after_its_last_chunk,
    }

    fn feed() -> Import {
        Import {
            name: "notes-feed",
            boundary: "alpha",
            table: "notes",
            columns: vec!["id", "body"],
        }
    }

    fn notes(ids: std::ops::Range<i32>, body: &str) -> Vec<Vec<Value>> {
        ids.map(|id| vec![id.into(), body.into()]).collect()
    }

    async fn sql_and_batch_steps_report_their_rows(db: TestDatabase) {
        let fabric = db.fabric();
        let update: &'static str = if db.engine() == Engine::MariaDb {
            "UPDATE alpha.notes SET body = ? WHERE id <= ?"
        } else {
            "UPDATE alpha.notes SET body = $1 WHERE id <= $2"
        };
        let mut seen = Vec::new();
        let done = fabric
            .unit_of_work("batch")
            .run(async |uow| -> Result<_, TestError> {
                let batch = Batch {
                    table: "notes",
                    columns: vec!["id", "body"],
                    rows: notes(1..251, "new"),
                };
                let options = BatchOptions {
                    chunk_size: 100,
                    upsert: None,
                };
                let inserted = uow
                    .insert_rows("alpha", "insert_notes", &batch, &options, |p| {
                        seen.push(p.rows)
                    })
                    .await?;
                let updated = uow
                    .execute("alpha", "rename", update, ["renamed".into(), 10.into()])
                    .await?;
                let upsert = Batch {
                    table: "notes",
                    columns: vec!["id", "body"],
                    rows: notes(1..6, "upserted"),
                };
                let options = BatchOptions {
                    chunk_size: 2,
                    upsert: Some(Upsert {
                        conflict_columns: vec!["id"],
                        update_columns: vec!["body"],
                    }),
                };
                uow.insert_rows("alpha", "upsert_notes", &upsert, &options, |_| {})
                    .await?;
                Ok((inserted, updated))
            })
            .await
            .unwrap();
        assert_eq!(done.value, (250, 10));
        assert_eq!(seen, [100, 200, 250]);
        let rows: Vec<_> = done
            .summary
            .steps
            .iter()
            .map(|s| (s.name, s.rows))
            .collect();
        assert_eq!(
            rows[..2],
            [("insert_notes", Some(250)), ("rename", Some(10))]
        );
        assert!(
            done.summary.to_string().contains("250 rows"),
            "{}",
            done.summary
        );
        assert_eq!(count(fabric, "alpha").await, 250);

        // A row of the wrong length fails the run; nothing of it persists.
        let err = fabric
            .unit_of_work("bad_batch")
            .run(async |uow| -> Result<u64, TestError> {
                let batch = Batch {
                    table: "notes",
                    columns: vec!["id", "body"],
                    rows: vec![vec![900.into()]],
                };
                let options = BatchOptions {
                    chunk_size: 10,
                    upsert: None,
                };
                uow.insert_rows("alpha", "insert_notes", &batch, &options, |_| {})
                    .await
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("alpha.notes"), "{err}");
    }

    async fn an_interrupted_import_resumes_after_its_last_chunk(db: TestDatabase) {
        let fabric = db.fabric();
        let options = BatchOptions {
            chunk_size: 100,
            upsert: None,
        };
        // Row 551 is malformed: the import stops after five committed chunks.
        let mut broken = notes(1..1001, "imported");
        broken[550] = vec![551.into()];
        let err = fabric
            .import(&feed(), broken, &options, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, ImportError::Database(_)), "{err}");
        assert_eq!(fabric.import_position("notes-feed").await.unwrap(), 500);
        assert_eq!(count(fabric, "alpha").await, 500);

        // The source, fixed, imported again under the same name: it resumes.
        let mut progress = Vec::new();
        let report = fabric
            .import(&feed(), notes(1..1001, "imported"), &options, |p| {
                progress.push(p.rows)
            })
            .await
            .unwrap();
        assert_eq!(
            (report.resumed_from, report.imported, report.chunks),
            (500, 500, 5)
        );
        assert_eq!(progress, [600, 700, 800, 900, 1000]);
        assert_eq!(count(fabric, "alpha").await, 1000);
        // Done: running it again imports nothing.
        let report = fabric
            .import(&feed(), notes(1..1001, "imported"), &options, |_| {})
            .await
            .unwrap();
        assert_eq!((report.resumed_from, report.imported), (1000, 0));
    }
}

/// `migration_plan` shows the SQL of pending migrations from a dry run, and applies
/// nothing.
#[tokio::test]
async fn a_migration_plan_shows_sql_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut topologies = vec![Topology::new(DatabaseUrl::Sqlite {
        dir: dir.path().to_owned(),
    })];
    let postgres = TestDatabase::create(Engine::Postgres, []).await;
    if let Some(postgres) = &postgres {
        topologies.push(postgres.topology().clone());
    }
    for topology in topologies {
        let fabric = Fabric::connect(&topology, [alpha()]).await.unwrap();
        let plans = fabric.databases().migration_plan().await.unwrap();
        assert_eq!(plans[0].pending.len(), 1);
        let sql = plans[0].sql.as_ref().expect("a dry run on this engine");
        assert_eq!(sql.len(), 1, "{sql:?}");
        assert!(sql[0].starts_with("CREATE TABLE \"notes\""), "{sql:?}");
        let status = fabric.databases().migration_status().await.unwrap();
        assert_eq!(status[0].pending.len(), 1, "the dry run applied something");
        fabric.databases().migrate().await.unwrap();
        let plans = fabric.databases().migration_plan().await.unwrap();
        assert!(plans[0].pending.is_empty());
        fabric.close().await;
    }
}

mod run_metrics {
    //! Every run counts in `metrics`: runs by outcome, duration, rows.
    use std::sync::{Arc, Mutex, OnceLock};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use orchestration::{DatabaseUrl, Fabric, Topology};

    use super::{TestError, alpha};

    /// Every increment and observation, rendered `name{label=value,…} +n`.
    type Lines = Arc<Mutex<Vec<String>>>;

    struct Capture(Lines);

    struct Handle {
        key: String,
        lines: Lines,
    }

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.lines
                .lock()
                .unwrap()
                .push(format!("{} +{value}", self.key));
        }
        fn absolute(&self, _value: u64) {}
    }

    impl HistogramFn for Handle {
        fn record(&self, _value: f64) {
            self.lines
                .lock()
                .unwrap()
                .push(format!("{} observed", self.key));
        }
    }

    impl Capture {
        fn handle(&self, key: &Key) -> Arc<Handle> {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            Arc::new(Handle {
                key: format!("{}{{{}}}", key.name(), labels.join(",")),
                lines: Arc::clone(&self.0),
            })
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.handle(key))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.handle(key))
        }
    }

    fn captured() -> &'static Lines {
        static LINES: OnceLock<Lines> = OnceLock::new();
        LINES.get_or_init(|| {
            let lines = Lines::default();
            metrics::set_global_recorder(Capture(Arc::clone(&lines))).expect("the only recorder");
            lines
        })
    }

    #[tokio::test]
    async fn runs_are_counted_by_outcome_with_duration_rows_and_steps() {
        let lines = captured();
        let dir = tempfile::tempdir().unwrap();
        let fabric = Fabric::connect(
            &Topology::new(DatabaseUrl::Sqlite {
                dir: dir.path().to_owned(),
            }),
            [alpha()],
        )
        .await
        .unwrap();
        fabric.databases().migrate().await.unwrap();
        let insert = "INSERT INTO alpha.notes (body) VALUES ($1)";
        fabric
            .unit_of_work("metrics_probe")
            .run(async |uow| -> Result<u64, TestError> {
                uow.execute("alpha", "insert", insert, ["x".into()]).await
            })
            .await
            .unwrap();
        let failed = fabric
            .unit_of_work("metrics_probe")
            .run(async |uow| -> Result<u64, TestError> {
                uow.execute("alpha", "insert", insert, ["y".into()]).await?;
                Err(TestError::GaveUp)
            })
            .await;
        assert!(failed.is_err());
        let lines = lines.lock().unwrap().clone();
        let ours: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.contains("metrics_probe"))
            .collect();
        assert_eq!(
            ours,
            [
                "switchyard_unit_of_work_runs_total{outcome=committed,pipeline=metrics_probe} +1",
                "switchyard_unit_of_work_duration_seconds{pipeline=metrics_probe} observed",
                "switchyard_unit_of_work_steps_total{boundary=alpha,outcome=ok,pipeline=metrics_probe,step=insert} +1",
                "switchyard_unit_of_work_step_duration_seconds{pipeline=metrics_probe,step=insert} observed",
                "switchyard_unit_of_work_rows_total{pipeline=metrics_probe} +1",
                "switchyard_unit_of_work_runs_total{outcome=rolled_back,pipeline=metrics_probe} +1",
                "switchyard_unit_of_work_duration_seconds{pipeline=metrics_probe} observed",
                // The step itself succeeded; the work after it failed.
                "switchyard_unit_of_work_steps_total{boundary=alpha,outcome=ok,pipeline=metrics_probe,step=insert} +1",
                "switchyard_unit_of_work_step_duration_seconds{pipeline=metrics_probe,step=insert} observed",
            ]
        );
    }
}
