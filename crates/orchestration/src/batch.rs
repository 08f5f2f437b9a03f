//! Batch steps: chunked inserts and upserts of many rows inside one unit of work (see
//! [`crate::import`] for an import that commits one transaction per chunk).

use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};

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
