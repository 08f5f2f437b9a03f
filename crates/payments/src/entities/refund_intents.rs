//! `payments.refund_intents`: a refund asked for, and what became of it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "payments", table_name = "refund_intents")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: Uuid,
    pub(crate) payment_id: Uuid,
    pub(crate) gateway_key: String,
    pub(crate) amount_minor: i64,
    pub(crate) status: String,
    pub(crate) error: Option<String>,
    pub(crate) gateway_reference: Option<String>,
    pub(crate) applied_at: Option<DateTimeUtc>,
    pub(crate) created_at: DateTimeUtc,
    pub(crate) updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
