//! `inventory.products`: the catalog.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "inventory", table_name = "products")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) price_minor: i64,
    pub(crate) currency: String,
    pub(crate) created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {
    #[sea_orm(has_one = "super::stock_levels::Entity")]
    StockLevel,
}

impl Related<super::stock_levels::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::StockLevel.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
