//! `inventory.stock_levels`: what is available and what is reserved, per product.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "inventory", table_name = "stock_levels")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) sku: String,
    pub(crate) available: i64,
    pub(crate) reserved: i64,
    pub(crate) updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {
    #[sea_orm(
        belongs_to = "super::products::Entity",
        from = "Column::Sku",
        to = "super::products::Column::Sku"
    )]
    Product,
}

impl ActiveModelBehavior for ActiveModel {}

impl Related<super::products::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Product.def()
    }
}
