//! Resumable imports: rows from a source inserted (or upserted) into a boundary's
//! table one transaction per chunk, each committed together with the import's durable
//! cursor, so that an interrupted import run again continues after its last chunk.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbErr, Value};

use crate::batch::{Batch, BatchOptions, BatchProgress, Upsert};
use crate::databases::Databases;
use crate::error::UnitOfWorkError;
use crate::schema::COORDINATOR_BOUNDARY;
use crate::unit_of_work::Pipelines;

/// A named import into a table of a boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The import's name: its cursor's key. Use a new name for a new source.
    pub name: &'static str,
    /// The boundary that holds the table.
    pub boundary: &'static str,
    /// The table (unqualified).
    pub table: &'static str,
    /// The columns every source row gives, in order.
    pub columns: Vec<&'static str>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows of the source already imported by earlier runs, skipped this time.
    pub resumed_from: u64,
    /// Rows imported by this run.
    pub imported: u64,
    /// Transactions committed by this run.
    pub chunks: u64,
}

/// An import failed; the chunks before the failure stay committed and a later run
/// resumes after them.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A chunk's unit of work failed.
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    /// The database failed.
    #[error("import failed: {0}")]
    Database(#[from] DbErr),
}

const CURSORS: &str = "import_cursors";

/// Runs `import` of `source` on `pipelines` (see [`crate::Fabric::import`]).
pub(crate) async fn run(
    pipelines: &Pipelines,
    import: &Import,
    source: impl IntoIterator<Item = Vec<Value>>,
    options: &BatchOptions,
    mut progress: impl FnMut(BatchProgress) + Send,
) -> Result<ImportReport, ImportError> {
    let resumed_from = position(pipelines.databases(), import.name).await?;
    let chunk_size = options.chunk_size.max(1);
    let mut rows = source
        .into_iter()
        .skip(usize::try_from(resumed_from).unwrap_or(usize::MAX));
    let mut position = resumed_from;
    let mut chunks = 0;
    loop {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(chunk_size).collect();
        if chunk.is_empty() {
            break;
        }
        let next = position + chunk.len() as u64;
        let batch = Batch {
            table: import.table,
            columns: import.columns.clone(),
            rows: chunk,
        };
        let cursor = Batch {
            table: CURSORS,
            columns: vec!["name", "position"],
            rows: vec![vec![
                import.name.into(),
                i64::try_from(next).unwrap_or(i64::MAX).into(),
            ]],
        };
        let cursor_options = BatchOptions {
            chunk_size: 1,
            upsert: Some(Upsert {
                conflict_columns: vec!["name"],
                update_columns: vec!["position"],
            }),
        };
        pipelines
            .pipeline("import")
            .run(async |uow| -> Result<(), ImportError> {
                uow.insert_rows(import.boundary, import.table, &batch, options, |_| {})
                    .await?;
                uow.insert_rows(
                    COORDINATOR_BOUNDARY,
                    "import_cursor",
                    &cursor,
                    &cursor_options,
                    |_| {},
                )
                .await?;
                Ok(())
            })
            .await?;
        position = next;
        chunks += 1;
        progress(BatchProgress {
            rows: position,
            chunks,
        });
    }
    Ok(ImportReport {
        resumed_from,
        imported: position - resumed_from,
        chunks,
    })
}

/// Rows of import `name` committed so far (0 if it never ran).
pub(crate) async fn position(databases: &Databases, name: &str) -> Result<u64, ImportError> {
    let connection = databases.connection(COORDINATOR_BOUNDARY).map_err(|_| {
        UnitOfWorkError::UnknownBoundary {
            boundary: COORDINATOR_BOUNDARY.to_owned(),
        }
    })?;
    let select: SelectStatement = Query::select()
        .column(Alias::new("position"))
        .from((Alias::new(COORDINATOR_BOUNDARY), Alias::new(CURSORS)))
        .and_where(Expr::col(Alias::new("name")).eq(name))
        .to_owned();
    let row = connection
        .query_one_raw(connection.get_database_backend().build(&select))
        .await?;
    let position: i64 = row
        .map(|r| r.try_get("", "position"))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(position).unwrap_or(0))
}
