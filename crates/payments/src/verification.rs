//! Customer verification and the rule it serves: large payments need a verified customer.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::entities::verified_customers;
use crate::error::{Error, Result};
use crate::validate::{self, MAX_CUSTOMER_ID_CHARS};

/// The seed's rule, in the domain: an amount above the threshold for an unverified
/// customer needs verification first.
///
/// The threshold is in minor units of whatever currency the payment is in: the rule
/// compares numbers and converts nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentPolicy {
    /// The most an unverified customer may pay at once, in minor units. Amounts up to
    /// and including it need no verification.
    pub verification_threshold_minor: i64,
}

impl Default for PaymentPolicy {
    /// A threshold of 100,000 minor units (1,000.00 in a two-decimal currency).
    fn default() -> Self {
        Self {
            verification_threshold_minor: 100_000,
        }
    }
}

impl PaymentPolicy {
    /// Whether `customer_id` (verified or not) may pay `amount_minor`.
    ///
    /// Takes the customer only to name them in the refusal.
    ///
    /// # Errors
    /// [`Error::VerificationRequired`] for an amount above the threshold when the
    /// customer is not verified.
    pub fn check(&self, customer_id: &str, amount_minor: i64, verified: bool) -> Result<()> {
        if amount_minor > self.verification_threshold_minor && !verified {
            return Err(Error::VerificationRequired {
                customer_id: customer_id.to_owned(),
                amount_minor,
                threshold_minor: self.verification_threshold_minor,
            });
        }
        Ok(())
    }
}

/// Marks `customer_id` verified from `now`; whether it was not verified before.
/// Verifying a verified customer changes nothing (the first verification's time stays).
///
/// # Errors
/// [`Error::Invalid`] for a customer id that is not 1–64 characters without surrounding
/// whitespace or control characters; [`Error::Database`] otherwise.
pub async fn verify_customer(
    db: &impl ConnectionTrait,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    validate::text("customer_id", customer_id, MAX_CUSTOMER_ID_CHARS)?;
    // ON CONFLICT DO NOTHING rather than catching the unique violation: on PostgreSQL a
    // failed statement aborts the caller's whole transaction. Whether this call inserted
    // is read back from the stored time: MySQL counts a conflicting row as affected.
    let now = now.trunc_subsecs(6);
    verified_customers::Entity::insert(verified_customers::ActiveModel {
        customer_id: Set(customer_id.to_owned()),
        verified_at: Set(now),
    })
    .on_conflict_do_nothing_on([verified_customers::Column::CustomerId])
    .exec_without_returning(db)
    .await?;
    Ok(verified_at(db, customer_id).await? == Some(now))
}

/// When `customer_id` was verified, if they were.
///
/// # Errors
/// [`Error::Database`].
pub async fn verified_at(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Option<DateTime<Utc>>> {
    Ok(verified_customers::Entity::find_by_id(customer_id)
        .one(db)
        .await?
        .map(|row| row.verified_at))
}

/// Whether `customer_id` has been verified.
///
/// # Errors
/// [`Error::Database`].
pub async fn is_verified(db: &impl ConnectionTrait, customer_id: &str) -> Result<bool> {
    Ok(verified_customers::Entity::find_by_id(customer_id)
        .one(db)
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_above_the_threshold_need_a_verified_customer() {
        let policy = PaymentPolicy::default();
        assert_eq!(policy.verification_threshold_minor, 100_000);
        assert!(policy.check("c-1", 100_000, false).is_ok());
        assert!(policy.check("c-1", 100_001, true).is_ok());
        let err = policy.check("c-1", 100_001, false).unwrap_err();
        assert!(
            matches!(
                err,
                Error::VerificationRequired {
                    ref customer_id,
                    amount_minor: 100_001,
                    threshold_minor: 100_000,
                } if customer_id == "c-1"
            ),
            "{err}"
        );
        let strict = PaymentPolicy {
            verification_threshold_minor: 0,
        };
        assert!(strict.check("c-1", 1, false).is_err());
    }
}
