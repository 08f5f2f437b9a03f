//! Batch steps: chunked inserts and upserts of many rows, inside one unit of work or
//! as a resumable import that commits one transaction per chunk with a durable cursor.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};

use crate::COORDINATOR_BOUNDARY;
use crate::error::UnitOfWorkError;
use crate::fabric::Fabric;

/// Rows for one table of a boundary (the table name is unqualified; the boundary is
/// its schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The table.
    pub table: &'static str,
    /// The columns every row gives, in order.
    pub columns: Vec<&'static str>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
}

/// How a batch is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    /// Rows per statement (and, for an import, per transaction). At least 1.
    pub chunk_size: usize,
    /// Update these columns of a row that already exists instead of failing.
    pub upsert: Option<Upsert>,
}

/// An upsert: on a conflict over `conflict_columns`, update `update_columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsert {
    /// The unique key that identifies an existing row.
    pub conflict_columns: Vec<&'static str>,
    /// The columns to overwrite.
    pub update_columns: Vec<&'static str>,
}

/// Progress after a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProgress {
    /// Rows written so far (for an import: since the start of the import, including
    /// earlier runs).
    pub rows: u64,
    /// Chunks written so far in this call.
    pub chunks: u64,
}

/// Writes `batch` into `schema` in chunks; returns the rows the database reports as
/// affected (MySQL counts an updated row twice).
pub(crate) async fn insert(
    tx: &DatabaseTransaction,
    schema: &'static str,
    batch: &Batch,
    options: &BatchOptions,
    progress: &mut (impl FnMut(BatchProgress) + Send),
) -> Result<u64, DbErr> {
    let chunk_size = options.chunk_size.max(1);
    let mut affected = 0;
    for (chunk_index, chunk) in batch.rows.chunks(chunk_size).enumerate() {
        let mut insert = Query::insert();
        insert
            .into_table((Alias::new(schema), Alias::new(batch.table)))
            .columns(batch.columns.iter().map(|c| Alias::new(*c)));
        for row in chunk {
            insert
                .values(row.iter().cloned().map(Expr::val))
                .map_err(|e| DbErr::Custom(format!("a row of {schema}.{}: {e}", batch.table)))?;
        }
        if let Some(upsert) = &options.upsert {
            insert.on_conflict(
                OnConflict::columns(upsert.conflict_columns.iter().map(|c| Alias::new(*c)))
                    .update_columns(upsert.update_columns.iter().map(|c| Alias::new(*c)))
                    .to_owned(),
            );
        }
        let statement = tx.get_database_backend().build(&insert);
        affected += tx.execute_raw(statement).await?.rows_affected();
        progress(BatchProgress {
            rows: affected,
            chunks: chunk_index as u64 + 1,
        });
    }
    Ok(affected)
}

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

impl Fabric {
    /// Imports `source` into the import's table, one transaction per chunk. Each chunk
    /// commits together with the import's cursor (`orchestration.import_cursors`, keyed
    /// by the import's name), so a crashed or interrupted import, run again with the
    /// same name and the same source, skips the rows already committed and continues.
    /// Use a new name for a new source (for example one per feed file).
    ///
    /// # Errors
    /// A chunk failed ([`ImportError`]); earlier chunks stay committed.
    pub async fn import(
        &self,
        import: &Import,
        source: impl IntoIterator<Item = Vec<Value>>,
        options: &BatchOptions,
        mut progress: impl FnMut(BatchProgress) + Send,
    ) -> Result<ImportReport, ImportError> {
        let resumed_from = self.import_position(import.name).await?;
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
            self.unit_of_work("import")
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
    ///
    /// # Errors
    /// The `orchestration` boundary is not registered, or the database failed.
    pub async fn import_position(&self, name: &str) -> Result<u64, ImportError> {
        let connection = self.connection(COORDINATOR_BOUNDARY).map_err(|_| {
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
}
