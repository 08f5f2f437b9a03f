//! The dispatcher's options and the check that they can work.

use std::time::Duration;

use crate::backoff::Backoff;

/// How the dispatcher claims, delivers, retries and prunes. In configuration (the
/// app's `[outbox]` table), every field is optional and durations read as
/// [`crate::clock::duration`] says.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherOptions {
    /// Messages claimed at once per database, at most. A claim takes no more than
    /// there are free delivery slots (of `concurrency`), so every message claimed
    /// starts at once and no claim lapses while its messages wait.
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
    fn a_lease_must_outlast_one_delivery() {
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
