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

/// A string of at most `len` characters that compares byte for byte on every backend:
/// on MySQL in the binary `utf8mb4_bin` collation, whose default collations ignore case
/// (and accents), so that a lookup for `Order:1` would find `order:1` there and nowhere
/// else.
pub(crate) fn exact_string<T: IntoIden>(
    manager: &SchemaManager<'_>,
    name: T,
    len: u32,
) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match manager.get_database_backend() {
        DbBackend::MySql => column.custom(format!(
            "VARCHAR({len}) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )),
        _ => column.string_len(len),
    };
    column.not_null();
    column
}
