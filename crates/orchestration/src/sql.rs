//! The engine-specific SQL the engine's own stores share: running a built statement,
//! beginning a write transaction, and inserting a row unless its key exists. Every
//! statement that differs by engine and is needed in more than one place is here.

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    IsolationLevel, SqliteTransactionMode, Statement, StatementBuilder, TransactionOptions,
    TransactionTrait,
};

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
/// writing meanwhile). On MySQL it is READ COMMITTED, PostgreSQL's default, so that
/// every server engine runs the same isolation: under MySQL's own default
/// (REPEATABLE READ) an `INSERT … SELECT` or an `UPDATE` locks the gaps between the
/// rows it reads, and the outbox's emitters, claims and deliveries, each correct on
/// PostgreSQL, deadlock on each other's gaps.
///
/// # Errors
/// The database could not begin one.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let isolation_level = (db.get_database_backend() == DatabaseBackend::MySql)
        .then_some(IsolationLevel::ReadCommitted);
    db.begin_with_options(TransactionOptions {
        isolation_level,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// A PostgreSQL statement with positional parameters (`$1`, …).
pub(crate) fn postgres(sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
    sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

/// Inserts one row into `schema.table` unless a row with the same unique key exists;
/// `true` if it inserted. A concurrent insert of the same key waits for the first
/// one's transaction and then finds its row.
///
/// sea-query's "on conflict do nothing" is, on MySQL, an update of the key to itself,
/// which MySQL counts as an affected row; `INSERT IGNORE` affects none, so the count
/// tells an insert from a duplicate on every engine.
pub(crate) async fn insert_if_absent(
    db: &impl ConnectionTrait,
    schema: &str,
    table: &str,
    columns: &[&str],
    values: Vec<sea_orm::Value>,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        insert_if_absent_sql(backend, schema, table, columns),
        values,
    );
    Ok(db.execute_raw(statement).await?.rows_affected() == 1)
}

fn insert_if_absent_sql(
    backend: DatabaseBackend,
    schema: &str,
    table: &str,
    columns: &[&str],
) -> String {
    let mysql = backend == DatabaseBackend::MySql;
    let quote = |name: &str| {
        if mysql {
            format!("`{name}`")
        } else {
            format!("\"{name}\"")
        }
    };
    let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let placeholders: Vec<String> = (1..=columns.len())
        .map(|n| {
            if mysql {
                "?".to_owned()
            } else {
                format!("${n}")
            }
        })
        .collect();
    let (insert, conflict) = if mysql {
        ("INSERT IGNORE", "")
    } else {
        ("INSERT", " ON CONFLICT DO NOTHING")
    };
    format!(
        "{insert} INTO {}.{} ({}) VALUES ({}){conflict}",
        quote(schema),
        quote(table),
        names.join(", "),
        placeholders.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_if_absent_ignores_duplicates_on_every_engine() {
        let columns = ["subscriber", "event_id"];
        assert_eq!(
            insert_if_absent_sql(DatabaseBackend::MySql, "outbox", "inbox", &columns),
            "INSERT IGNORE INTO `outbox`.`inbox` (`subscriber`, `event_id`) VALUES (?, ?)"
        );
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            assert_eq!(
                insert_if_absent_sql(backend, "outbox", "inbox", &columns),
                r#"INSERT INTO "outbox"."inbox" ("subscriber", "event_id") VALUES ($1, $2) ON CONFLICT DO NOTHING"#
            );
        }
    }
}
