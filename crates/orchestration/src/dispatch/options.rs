//! The dispatcher's options, the check that they can work, and the size of a claim: no
//! more messages than can be delivered before the claim expires, so a claim never
//! lapses while its messages are still queued here (which would deliver them twice).

use std::time::Duration;

use crate::backoff::Backoff;

/// How the dispatcher claims, delivers, retries and prunes. In configuration (the
/// app's `[outbox]` table), every field is optional and durations read as
/// [`crate::clock::duration`] says.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherOptions {
    /// Messages claimed at once per database, at most: a claim takes no more than
    /// `concurrency` deliveries can finish within `lease` (see
    /// [`DispatcherOptions::claim_size`]).
    pub batch_size: u32,
    /// Deliveries running at once per database (different keys only: one key's
    /// messages are delivered one after another).
    pub concurrency: usize,
    /// Deliveries of one message before it is dead.
    pub max_attempts: u32,
    /// The delay before each retry; each delay is jittered down by up to half.
    pub backoff: Backoff,
    /// How long a claim holds its messages. A claimer that dies leaves them to
    /// others once it expires; it must exceed `handler_timeout`.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub lease: Duration,
    /// How long one delivery may take before it counts as failed.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub handler_timeout: Duration,
    /// How often to look for due messages when nothing wakes the dispatcher.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub poll_interval: Duration,
    /// Wake on PostgreSQL `NOTIFY` from committing emitters (other instances too).
    pub listen: bool,
    /// How long delivered messages and inbox records are kept.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub retention: Duration,
    /// How often to delete what is older than `retention`.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub prune_interval: Duration,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        Self {
            batch_size: 16,
            concurrency: 4,
            max_attempts: 10,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            lease: Duration::from_secs(60),
            handler_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            listen: true,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
        }
    }
}

/// An option that would make the dispatcher deliver twice or never.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct InvalidOptions {
    /// The option, as named in [`DispatcherOptions`] (and in configuration).
    pub option: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl DispatcherOptions {
    /// Checks that the options can work.
    ///
    /// # Errors
    /// A count of zero, a zero poll interval or handler timeout, or a lease that does
    /// not outlast one delivery (`handler_timeout`).
    pub fn validate(&self) -> Result<(), InvalidOptions> {
        let invalid = |option, reason: &str| {
            Err(InvalidOptions {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.batch_size == 0 {
            return invalid("batch_size", "must be at least 1");
        }
        if self.concurrency == 0 {
            return invalid("concurrency", "must be at least 1");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts", "must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval", "must be more than 0");
        }
        if self.handler_timeout.is_zero() {
            return invalid("handler_timeout", "must be more than 0");
        }
        if self.lease <= self.handler_timeout {
            return Err(InvalidOptions {
                option: "lease",
                reason: format!(
                    "{:?} must exceed handler_timeout ({:?}): a claim must outlast the \
                     delivery of the messages it holds",
                    self.lease, self.handler_timeout
                ),
            });
        }
        Ok(())
    }

    /// How many messages one claim takes: `batch_size`, or fewer when `concurrency`
    /// deliveries of up to `handler_timeout` each could not finish them all before the
    /// lease ends (a claim runs in rounds of `concurrency` deliveries; only the rounds
    /// that end strictly inside the lease are claimed for). At least one round, for
    /// options that [`DispatcherOptions::validate`] accepts.
    #[must_use]
    pub fn claim_size(&self) -> u64 {
        let timeout = self.handler_timeout.as_nanos().max(1);
        let rounds = self.lease.as_nanos().saturating_sub(1) / timeout;
        let fits = rounds.max(1).saturating_mul(self.concurrency as u128);
        u64::try_from(fits.min(u128::from(self.batch_size))).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_at_every_concurrency() {
        for concurrency in [1, 2, 3, 4, 16, 64, 1024] {
            let options = DispatcherOptions {
                concurrency,
                ..DispatcherOptions::default()
            };
            assert_eq!(options.validate(), Ok(()), "concurrency {concurrency}");
        }
    }

    #[test]
    fn a_claim_takes_no_more_than_can_be_delivered_within_its_lease() {
        let with = |batch_size, concurrency, lease, timeout| {
            DispatcherOptions {
                batch_size,
                concurrency,
                lease: Duration::from_secs(lease),
                handler_timeout: Duration::from_secs(timeout),
                ..DispatcherOptions::default()
            }
            .claim_size()
        };
        // The defaults: 16 at 4 a time is 4 rounds of 10 s, inside 60 s.
        assert_eq!(DispatcherOptions::default().claim_size(), 16);
        // One at a time: 5 rounds of 10 s end inside 60 s, a sixth would not.
        assert_eq!(with(16, 1, 60, 10), 5);
        assert_eq!(with(16, 1, 61, 10), 6);
        assert_eq!(with(16, 3, 60, 10), 15);
        assert_eq!(with(64, 16, 60, 10), 64);
        assert_eq!(with(16, 1, 11, 10), 1);
        // A round always: validate refuses a lease within one timeout.
        assert_eq!(with(16, 2, 10, 10), 2);
        let short = DispatcherOptions {
            lease: Duration::from_secs(10),
            ..DispatcherOptions::default()
        };
        assert_eq!(short.validate().unwrap_err().option, "lease");
        let zero = DispatcherOptions {
            handler_timeout: Duration::ZERO,
            ..DispatcherOptions::default()
        };
        assert_eq!(zero.validate().unwrap_err().option, "handler_timeout");
    }
}
