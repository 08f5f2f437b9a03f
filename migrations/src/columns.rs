//! Column types that differ by backend.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// A point in time in UTC with microseconds: `timestamptz` on PostgreSQL, `DATETIME(6)`
/// on MySQL (whose `TIMESTAMP` ends in 2038 and keeps whole seconds), text on SQLite.
pub(crate) fn instant<T: IntoIden>(manager: &SchemaManager<'_>, name: T) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match manager.get_database_backend() {
        DbBackend::MySql => column.custom("DATETIME(6)"),
        _ => column.timestamp_with_time_zone(),
    };
    column.not_null();
    column
}
