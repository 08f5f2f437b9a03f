//! The values identity decides on, each checked when it is made.

use std::fmt;

use uuid::Uuid;

use crate::Invalid;

/// An account's id (a UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub Uuid);

impl AccountId {
    /// A new id.
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for AccountId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, normalised: surrounding whitespace removed, lowercased. Checked
/// for shape only (one `@`, a dotted domain, at most 254 characters): whether it
/// receives mail is for a verification mail to find out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    /// The most characters an address may have (RFC 5321's path limit).
    pub const MAX_CHARS: usize = 254;

    /// Checks and normalises `email`.
    ///
    /// # Errors
    /// It is not shaped like an address.
    pub fn parse(email: &str) -> Result<Self, Invalid> {
        let email = email.trim().to_lowercase();
        if email.chars().count() > Self::MAX_CHARS {
            return Err(Invalid("must be at most 254 characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(Invalid("must be an email address"));
        };
        let well_formed = !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !well_formed {
            return Err(Invalid("must be an email address"));
        }
        Ok(Self(email))
    }

    /// The address as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an account is called: 1 to 200 characters, not blank, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Checks and trims `name`.
    ///
    /// # Errors
    /// It is blank, too long or holds a control character.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Invalid("must not be blank"));
        }
        if name.chars().count() > 200 {
            return Err(Invalid("must be at most 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid("must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// Someone who runs the shop.
    Staff,
    /// Someone who buys.
    Customer,
}

impl AccountKind {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Customer => "customer",
        }
    }

    /// From its stored form.
    ///
    /// # Errors
    /// No kind is called `text`.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "staff" => Ok(Self::Staff),
            "customer" => Ok(Self::Customer),
            _ => Err(Invalid("must be `staff` or `customer`")),
        }
    }
}

/// Where an account is in its life: `pending → active ⇄ suspended`, and any of them
/// `→ disabled`, which is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Created, not yet verified or activated: cannot log in.
    Pending,
    /// Can log in.
    Active,
    /// Barred for now (by staff); can be reactivated. Cannot log in.
    Suspended,
    /// Closed for good. Cannot log in.
    Disabled,
}

impl AccountStatus {
    /// Whether an account that is `self` may become `next`.
    #[must_use]
    pub fn can_become(self, next: Self) -> bool {
        use AccountStatus::{Active, Disabled, Pending, Suspended};
        matches!(
            (self, next),
            (Pending, Active)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Pending | Active | Suspended, Disabled)
        )
    }

    /// Whether an account in this status may log in and use its sessions.
    #[must_use]
    pub fn can_log_in(self) -> bool {
        self == Self::Active
    }

    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Disabled => "disabled",
        }
    }

    /// From its stored form.
    ///
    /// # Errors
    /// No status is called `text`.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "disabled" => Ok(Self::Disabled),
            _ => Err(Invalid("must be pending, active, suspended or disabled")),
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password as typed: 12 to 256 characters. It never prints (`Debug` shows
/// `Password(…)`) and has no `Display`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks `password` (kept as given: spaces count).
    ///
    /// # Errors
    /// It is shorter than 12 or longer than 256 characters.
    pub fn new(password: &str) -> Result<Self, Invalid> {
        let chars = password.chars().count();
        if chars < 12 {
            return Err(Invalid("must be at least 12 characters"));
        }
        if chars > 256 {
            return Err(Invalid("must be at most 256 characters"));
        }
        Ok(Self(password.to_owned()))
    }

    /// A password as given at login, to verify: any 1 to 256 characters (the length
    /// rule is for setting a password, not for checking one).
    ///
    /// # Errors
    /// It is empty or longer than 256 characters.
    pub fn attempt(password: &str) -> Result<Self, Invalid> {
        let chars = password.chars().count();
        if chars == 0 || chars > 256 {
            return Err(Invalid("must be 1 to 256 characters"));
        }
        Ok(Self(password.to_owned()))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// Every ability the app checks. An ability is a named string; roles grant sets of them.
pub const ABILITIES: [&str; 8] = [
    "catalog.write",
    "stock.write",
    "orders.place",
    "orders.read.any",
    "audit.read",
    "ops.read",
    "ops.write",
    "identity.admin",
];

/// The ability that stands for every ability, those added later too (the built-in
/// `admin` role grants it).
pub const EVERY_ABILITY: &str = "*";

/// An ability: lowercase words joined by dots (`catalog.write`), at most 64
/// characters; or [`EVERY_ABILITY`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ability(String);

impl Ability {
    /// Checks `name`.
    ///
    /// # Errors
    /// It is not dotted lowercase words.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        if name == EVERY_ABILITY {
            return Ok(Self(name.to_owned()));
        }
        dotted(name).map(Self)
    }

    /// Whether holding this ability grants `other`.
    #[must_use]
    pub fn grants(&self, other: &str) -> bool {
        self.0 == EVERY_ABILITY || self.0 == other
    }

    /// The ability's name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A role's name: lowercase words joined by dots or `_`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// Checks `name`.
    ///
    /// # Errors
    /// It is not dotted lowercase words.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        dotted(name).map(Self)
    }

    /// The role's name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn dotted(name: &str) -> Result<String, Invalid> {
    let words_ok = name.split('.').all(|word| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if name.is_empty() || name.len() > 64 || !words_ok {
        return Err(Invalid(
            "must be lowercase words (letters, digits, `_`) joined by dots, at most 64 characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked_for_shape() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@example.com",
            "alice@.example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_lifecycle_allows_only_its_transitions() {
        use AccountStatus::{Active, Disabled, Pending, Suspended};
        let all = [Pending, Active, Suspended, Disabled];
        let allowed: Vec<(AccountStatus, AccountStatus)> = all
            .iter()
            .flat_map(|from| all.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            [
                (Pending, Active),
                (Pending, Disabled),
                (Active, Suspended),
                (Active, Disabled),
                (Suspended, Active),
                (Suspended, Disabled),
            ]
        );
        assert!(all.iter().all(|s| s.can_log_in() == (*s == Active)));
        for status in all {
            assert_eq!(AccountStatus::parse(status.as_str()), Ok(status));
        }
    }

    #[test]
    fn a_password_never_prints() {
        let password = Password::new("correct horse battery").unwrap();
        assert_eq!(format!("{password:?}"), "Password(…)");
        assert!(Password::new("short").is_err());
    }

    #[test]
    fn abilities_and_roles_are_dotted_lowercase_words() {
        for name in ABILITIES {
            assert!(Ability::parse(name).is_ok(), "{name}");
        }
        for bad in ["", "Catalog.write", "catalog..write", "catalog.", "a b"] {
            assert!(Ability::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RoleName::parse("admin").is_ok());
    }
}
