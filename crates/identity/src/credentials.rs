//! Password credentials: argon2id hashes in PHC strings, which record their parameters
//! so that a raised policy rehashes old passwords at their next login.
//!
//! Hashing and verifying are CPU work (about 19 MiB and two passes each by default) and
//! synchronous: run them on a blocking thread in async code.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::OnConflict};

use crate::entities::{credentials, sessions};
use crate::{AccountId, Error, Password, Result};

/// The argon2id cost of new hashes. The default is OWASP's recommendation for argon2id
/// (19 MiB of memory, 2 iterations, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordPolicy {
    /// Checks that argon2 accepts these parameters.
    ///
    /// # Errors
    /// [`Error::Hashing`] naming what argon2 refuses.
    pub fn check(&self) -> Result<()> {
        self.hasher().map(|_| ())
    }

    fn hasher(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|err| Error::Hashing(err.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Whether `hash` was made with less than this policy asks for (or by another
    /// algorithm): then it should be replaced once the password is known again.
    fn is_weaker(&self, hash: &str) -> bool {
        let Ok(parsed) = argon2::PasswordHash::new(hash) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        parsed.algorithm.as_str() != argon2::ARGON2ID_IDENT.as_str()
            || params.m_cost() < self.memory_kib
            || params.t_cost() < self.iterations
            || params.p_cost() < self.parallelism
    }
}

/// A stored password hash, as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
/// Not a secret in itself, but not for logs either: `Debug` shows `PasswordHash(…)`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The PHC string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(…)")
    }
}

/// What checking a password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// It matches; `rehash` if its hash is weaker than the policy (store a new one).
    Matches {
        /// The stored hash should be replaced by one made under the policy.
        rehash: bool,
    },
    /// It does not match (or there is no password to match).
    Mismatch,
}

/// Hashes `password` under `policy` with a fresh random salt.
///
/// # Errors
/// [`Error::Hashing`] if the policy's parameters are out of argon2's range.
pub fn hash_password(password: &Password, policy: &PasswordPolicy) -> Result<PasswordHash> {
    let hash = policy
        .hasher()?
        .hash_password(password.expose())
        .map_err(|err| Error::Hashing(err.to_string()))?;
    Ok(PasswordHash(hash.to_string()))
}

/// Hashes of a throwaway password, one per policy, to verify against when there is no
/// stored hash: an unknown email then costs what a wrong password costs.
static DECOYS: Mutex<Vec<(PasswordPolicy, PasswordHash)>> = Mutex::new(Vec::new());

fn decoy(policy: &PasswordPolicy) -> Result<PasswordHash> {
    let mut decoys = DECOYS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, hash)) = decoys.iter().find(|(p, _)| p == policy) {
        return Ok(hash.clone());
    }
    let throwaway = Password::new("decoy password, never anyone's").expect("long enough");
    let hash = hash_password(&throwaway, policy)?;
    decoys.push((*policy, hash.clone()));
    Ok(hash)
}

/// Checks `password` against `stored`. With no stored hash (no such account, or no
/// password set) it still runs one verification, against a decoy made under `policy`,
/// and answers [`PasswordCheck::Mismatch`]: the time taken does not tell whether the
/// account exists. The comparison is argon2's, in constant time.
///
/// # Errors
/// [`Error::Hashing`] if the policy's parameters are out of argon2's range.
pub fn verify_password(
    password: &Password,
    stored: Option<&PasswordHash>,
    policy: &PasswordPolicy,
) -> Result<PasswordCheck> {
    let (hash, real) = match stored {
        Some(hash) => (hash.clone(), true),
        None => (decoy(policy)?, false),
    };
    // The stored hash's own parameters are used, whatever the policy says.
    let matches = policy
        .hasher()?
        .verify_password(password.expose(), hash.as_str())
        .is_ok();
    Ok(if matches && real {
        PasswordCheck::Matches {
            rehash: policy.is_weaker(hash.as_str()),
        }
    } else {
        PasswordCheck::Mismatch
    })
}

/// Stores `hash` as account `account`'s password, at `now`. A changed password ends
/// every session of the account, in the same transaction.
///
/// # Errors
/// The database failed.
pub async fn set_password(
    conn: &impl ConnectionTrait,
    account: AccountId,
    hash: &PasswordHash,
    now: DateTime<Utc>,
) -> Result<()> {
    credentials::Entity::insert(credentials::ActiveModel {
        account_id: Set(account.to_string()),
        password_hash: Set(hash.as_str().to_owned()),
        changed_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(credentials::Column::AccountId)
            .update_columns([
                credentials::Column::PasswordHash,
                credentials::Column::ChangedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    sessions::Entity::delete_many()
        .filter(sessions::Column::AccountId.eq(account.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Replaces account `account`'s password hash by `hash` of the same password, made
/// under a raised policy (after [`verify_password`] said `rehash`): its sessions stay.
///
/// # Errors
/// The database failed.
pub async fn upgrade_password_hash(
    conn: &impl ConnectionTrait,
    account: AccountId,
    hash: &PasswordHash,
) -> Result<()> {
    credentials::Entity::update_many()
        .col_expr(
            credentials::Column::PasswordHash,
            sea_orm::sea_query::Expr::value(hash.as_str()),
        )
        .filter(credentials::Column::AccountId.eq(account.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Account `account`'s stored password hash, if it has one.
///
/// # Errors
/// The database failed.
pub async fn stored_password(
    conn: &impl ConnectionTrait,
    account: AccountId,
) -> Result<Option<PasswordHash>> {
    Ok(credentials::Entity::find_by_id(account.to_string())
        .one(conn)
        .await?
        .map(|row| PasswordHash(row.password_hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters, so the tests stay fast; the logic is the same.
    const CHEAP: PasswordPolicy = PasswordPolicy {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn a_hash_records_its_parameters_and_matches_only_its_password() {
        let password = Password::new("correct horse battery").unwrap();
        let hash = hash_password(&password, &CHEAP).unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{}",
            hash.as_str()
        );
        assert_eq!(
            verify_password(&password, Some(&hash), &CHEAP).unwrap(),
            PasswordCheck::Matches { rehash: false }
        );
        let wrong = Password::new("correct horse battery!").unwrap();
        assert_eq!(
            verify_password(&wrong, Some(&hash), &CHEAP).unwrap(),
            PasswordCheck::Mismatch
        );
        assert_ne!(hash_password(&password, &CHEAP).unwrap(), hash, "salted");
    }

    #[test]
    fn a_hash_weaker_than_the_policy_asks_to_be_rehashed() {
        let password = Password::new("correct horse battery").unwrap();
        let old = hash_password(&password, &CHEAP).unwrap();
        let raised = PasswordPolicy {
            memory_kib: 128,
            ..CHEAP
        };
        assert_eq!(
            verify_password(&password, Some(&old), &raised).unwrap(),
            PasswordCheck::Matches { rehash: true }
        );
    }

    #[test]
    fn no_stored_hash_never_matches_even_the_decoys_password() {
        let decoys = Password::new("decoy password, never anyone's").unwrap();
        assert_eq!(
            verify_password(&decoys, None, &CHEAP).unwrap(),
            PasswordCheck::Mismatch
        );
    }

    #[test]
    fn the_default_policy_is_owasps() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            (policy.memory_kib, policy.iterations, policy.parallelism),
            (19 * 1024, 2, 1)
        );
        assert_eq!(
            format!(
                "{:?}",
                hash_password(&Password::new("correct horse battery").unwrap(), &CHEAP).unwrap()
            ),
            "PasswordHash(…)"
        );
    }
}
