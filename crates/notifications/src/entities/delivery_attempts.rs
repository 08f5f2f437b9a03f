//! `notifications.delivery_attempts`: each attempt to deliver a notification.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "notifications", table_name = "delivery_attempts")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) notification_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) attempt: i32,
    pub(crate) at: DateTimeUtc,
    pub(crate) outcome: String,
    pub(crate) error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
