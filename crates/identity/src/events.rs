//! The events the identity boundary publishes: plain serde structs, stable on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An account's lifecycle status changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatusChanged {
    /// The account.
    pub account_id: String,
    /// Its status before.
    pub from: String,
    /// Its status now.
    pub to: String,
    /// When it changed.
    pub changed_at: DateTime<Utc>,
}

impl AccountStatusChanged {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "identity.account_status_changed";

    /// The key that orders one account's events.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        format!("account:{}", self.account_id)
    }
}
