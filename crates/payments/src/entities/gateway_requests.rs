//! `payments.gateway_requests`: the simulated gateway's own store, one row per request
//! key, as a keyed payment API keeps them. Not the payments ledger: that is `payments`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "payments", table_name = "gateway_requests")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) key: String,
    /// `charge` or `refund`.
    pub(crate) kind: String,
    /// For a refund, the key of the charge it refunds.
    pub(crate) charge_key: Option<String>,
    pub(crate) amount_minor: i64,
    /// None for a refund of nothing, and for the charge a refund cancelled before it
    /// arrived.
    pub(crate) currency: Option<String>,
    /// `charged`, `declined`, `refunded` or `nothing_charged`.
    pub(crate) outcome: String,
    pub(crate) reference: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub(crate) reason: Option<String>,
    pub(crate) created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
