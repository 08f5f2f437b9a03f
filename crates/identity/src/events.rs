//! The events the identity boundary publishes: plain serde structs, stable on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Someone tried to log in (either step). For the audit trail: it carries no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAttempted {
    /// The account, when the email named one (or the challenge did).
    pub account_id: Option<String>,
    /// The email as normalised, when it was one.
    pub email: Option<String>,
    /// The client's address.
    pub client: String,
    /// `session_started`, `totp_required`, `invalid_credentials`, `invalid_code`,
    /// `account_not_active` or `throttled`.
    pub outcome: String,
    /// When.
    pub attempted_at: DateTime<Utc>,
}

impl LoginAttempted {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "identity.login_attempted";

    /// The key that orders one client's attempts.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        format!("client:{}", self.client)
    }
}

/// A customer registered (or registered again while pending): a verification is due.
/// It carries no secret: the token is issued where the mail is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRegistered {
    /// The pending account.
    pub account_id: String,
    /// Its email.
    pub email: String,
    /// When.
    pub registered_at: DateTime<Utc>,
}

impl AccountRegistered {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "identity.account_registered";

    /// The key that orders one account's events.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        format!("account:{}", self.account_id)
    }
}

/// A registration's email was verified: the account is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountVerified {
    /// The account.
    pub account_id: String,
    /// Its email.
    pub email: String,
    /// Its display name.
    pub display_name: String,
    /// When.
    pub verified_at: DateTime<Utc>,
}

impl AccountVerified {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "identity.account_verified";

    /// The key that orders one account's events.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        format!("account:{}", self.account_id)
    }
}
