//! `identity.accounts`: one row per account.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "identity", table_name = "accounts")]
pub(crate) struct Model {
    /// A UUIDv7, as text.
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    /// Normalised; unique.
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) kind: String,
    pub(crate) status: String,
    pub(crate) created_at: DateTimeUtc,
    pub(crate) updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
