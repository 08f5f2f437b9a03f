//! `inventory.feed_rejects`: the rows of a feed that were not imported, and why.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "inventory", table_name = "feed_rejects")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) feed: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) line: i64,
    pub(crate) sku: Option<String>,
    pub(crate) reason: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
