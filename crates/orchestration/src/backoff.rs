//! Exponential backoff: the delay before the next attempt of anything that retries
//! (saga steps, event deliveries, worker restarts, polling).

use std::time::Duration;

/// A delay that starts at `initial` and doubles with each failed attempt, up to `max`.
/// In configuration: `{ initial = "1s", max = "5m" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The delay after the first failure.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub initial: Duration,
    /// The longest delay.
    #[serde(deserialize_with = "crate::clock::duration::deserialize")]
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    #[must_use]
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay after failure number `failures` (from 1; 0 counts as 1):
    /// `initial × 2^(failures − 1)`, at most `max`.
    #[must_use]
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        self.initial.saturating_mul(1 << exponent).min(self.max)
    }

    /// [`Backoff::delay`] jittered into `[delay / 2, delay]`, so that many callers
    /// that failed together do not retry together.
    #[must_use]
    pub fn jittered(&self, failures: u32) -> Duration {
        self.delay(failures).mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_maximum_with_jitter_of_at_most_half() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for (failures, full) in [(0, 100), (1, 100), (2, 200), (3, 400), (4, 800), (5, 1000)] {
            let full = Duration::from_millis(full);
            assert_eq!(backoff.delay(failures), full, "failure {failures}");
            for _ in 0..100 {
                let jittered = backoff.jittered(failures);
                assert!(jittered >= full / 2 && jittered <= full, "{jittered:?}");
            }
        }
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }
}
