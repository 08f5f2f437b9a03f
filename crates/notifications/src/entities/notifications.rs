//! `notifications.notifications`: one row per notification to deliver.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "notifications", table_name = "notifications")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) cause: String,
    pub(crate) recipient: String,
    pub(crate) channel: String,
    pub(crate) template: String,
    pub(crate) data: String,
    pub(crate) status: String,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
    pub(crate) next_attempt_at: DateTimeUtc,
    pub(crate) created_at: DateTimeUtc,
    pub(crate) sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
