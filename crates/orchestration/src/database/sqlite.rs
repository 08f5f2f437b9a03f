//! SQLite: one file per boundary, attached to a main file that anchors commits across
//! them, and the clean-up of what a crash during such a commit leaves behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{DatabaseSettings, SQLITE_MAIN_FILE, SQLITE_POOL_SIZE, unusable};
use crate::boundary::Boundary;
use crate::error::FabricError;
use crate::topology::DatabaseId;

pub(super) fn sqlite_options(file: &Path, settings: &DatabaseSettings) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(settings.create_missing)
        // A rollback journal, not WAL: only with a rollback journal does SQLite commit a
        // transaction across attached files atomically (FACTS.md measured WAL tearing
        // such commits under kill). The price is throughput and readers that wait for
        // writers; see ARCHITECTURE.md.
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(settings.lock_timeout)
        .foreign_keys(true)
}

pub(super) async fn connect_sqlite(
    id: &DatabaseId,
    dir: &Path,
    boundaries: &[Boundary],
    settings: &DatabaseSettings,
) -> Result<DatabaseConnection, FabricError> {
    if settings.create_missing {
        std::fs::create_dir_all(dir)
            .map_err(|e| unusable(id, &format!("creating directory {}", dir.display()), e))?;
    } else {
        // ATTACH creates a missing file whatever the main file's flags, so a
        // connection that must create nothing checks the files first.
        let files = std::iter::once(SQLITE_MAIN_FILE.to_owned())
            .chain(boundaries.iter().map(|b| format!("{}.db", b.name())));
        if let Some(missing) = files
            .map(|file| dir.join(file))
            .find(|path| !path.is_file())
        {
            return Err(unusable(
                id,
                &format!("{} does not exist", missing.display()),
                "run `switchyard migrate up` (or serve) to create it",
            ));
        }
    }
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
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(move |conn, _meta| {
            let attach = Arc::clone(&attach);
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(attach)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(sqlite_options(&dir.join(SQLITE_MAIN_FILE), settings))
        .await
        .map_err(|e| unusable(id, "opening the SQLite files", e))?;
    let connection = DatabaseConnection::from(pool);
    remove_orphan_super_journals(id, &dir, &connection, boundaries).await?;
    Ok(connection)
}

/// Removes the super-journals (`switchyard.db-mj…`) that a crash during a commit across
/// files left behind; SQLite itself never removes one that no file's journal names.
///
/// A super-journal is listed first and removed only if no journal exists after that:
/// while a commit is in flight its files' journals exist from before its super-journal
/// is created until after it is deleted (that deletion is the commit point), so a
/// super-journal seen with no journal around it belongs to no commit. Removing one that
/// a hot journal still names would make that journal look committed, which is why hot
/// journals are rolled back (by reading every file) before this runs.
///
/// Nothing is read unless a super-journal is there, so an ordinary start pays for one
/// directory listing.
async fn remove_orphan_super_journals(
    id: &DatabaseId,
    dir: &Path,
    connection: &DatabaseConnection,
    boundaries: &[Boundary],
) -> Result<(), FabricError> {
    let super_prefix = format!("{SQLITE_MAIN_FILE}-mj");
    let names = |keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| keep(name))
            .collect()
    };
    let supers = names(&|name| name.starts_with(&super_prefix));
    if supers.is_empty() {
        return Ok(());
    }
    for boundary in boundaries {
        let sql = format!(
            "SELECT 1 FROM \"{}\".sqlite_master LIMIT 1",
            boundary.name()
        );
        connection
            .execute_unprepared(&sql)
            .await
            .map_err(|e| unusable(id, &format!("reading {}.db", boundary.name()), e))?;
    }
    if !names(&|name| name.ends_with(".db-journal")).is_empty() {
        return Ok(());
    }
    for name in supers {
        match std::fs::remove_file(dir.join(&name)) {
            Ok(()) => {
                tracing::info!(database = %id, file = name, "removed an orphan super-journal left by a crash");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(database = %id, file = name, error = %err, "cannot remove an orphan super-journal");
            }
        }
    }
    Ok(())
}
