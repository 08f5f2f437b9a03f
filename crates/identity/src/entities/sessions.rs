//! `identity.sessions`: one row per live session. The token itself is never stored,
//! only its SHA-256; a revoked session's row is deleted.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "identity", table_name = "sessions")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) account_id: String,
    /// The token's SHA-256, hex; unique.
    pub(crate) token_hash: String,
    pub(crate) user_agent: String,
    pub(crate) created_at: DateTimeUtc,
    pub(crate) last_used_at: DateTimeUtc,
    pub(crate) expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
