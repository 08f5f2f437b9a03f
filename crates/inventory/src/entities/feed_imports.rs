//! `inventory.feed_imports`: each version of a product feed imported, its cursor and
//! counts.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "inventory", table_name = "feed_imports")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) feed: String,
    pub(crate) source: String,
    pub(crate) position: i64,
    pub(crate) inserted: i64,
    pub(crate) updated: i64,
    pub(crate) unchanged: i64,
    pub(crate) rejected: i64,
    pub(crate) started_at: DateTimeUtc,
    pub(crate) updated_at: DateTimeUtc,
    pub(crate) finished_at: Option<DateTimeUtc>,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
