//! `identity.totp_secrets`: an account's TOTP secret (base32), whether its enrolment
//! is confirmed, and the last step a code was accepted for.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "identity", table_name = "totp_secrets")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) account_id: String,
    pub(crate) secret_base32: String,
    pub(crate) confirmed: bool,
    /// -1 before any code was accepted.
    pub(crate) last_used_step: i64,
    pub(crate) created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
