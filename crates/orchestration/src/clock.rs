//! Wall-clock time for workers and schedules, replaceable in tests, and how the
//! engine's tables store it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The time as workers see it.
///
/// [`Clock::system`] reads the system clock. [`Clock::following_tokio`] starts at a
/// chosen instant and advances with tokio's clock, so a test that pauses tokio's time
/// (`tokio::time::pause`) drives schedules, backoffs and leases without sleeping.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `None` for the system clock; otherwise the wall time at a tokio instant.
    origin: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self { origin: None }
    }

    /// A clock that reads `start` now and then advances with tokio's clock.
    #[must_use]
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        Self {
            origin: Some((start, tokio::time::Instant::now())),
        }
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        match self.origin {
            None => Utc::now(),
            Some((wall, instant)) => {
                let elapsed =
                    chrono::Duration::from_std(instant.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
                wall + elapsed
            }
        }
    }

    /// Sleeps until `at` by this clock. It may wake early if the system clock is
    /// set back meanwhile; callers that need the deadline check [`Clock::now`] again.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        let left = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(left).await;
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// `at` as milliseconds since the Unix epoch: how the engine's tables store instants
/// (an integer compares and indexes the same on every engine).
pub(crate) fn epoch_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The instant `ms` milliseconds after the Unix epoch (the epoch itself if out of
/// range).
pub(crate) fn from_epoch_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `now + duration` in epoch milliseconds, saturating instead of overflowing.
pub(crate) fn epoch_millis_after(now: DateTime<Utc>, duration: Duration) -> i64 {
    epoch_millis(now).saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2))
}

/// Durations in configuration: a number of seconds (`30`, `0.5`) or text with units,
/// as `humantime` reads it (`500ms`, `30s`, `2m`, `1h 30m`, `7d`). Use it with
/// `#[serde(deserialize_with = "orchestration::clock::duration::deserialize")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Reads `30`, `0.5`, `500ms`, `30s`, `2m`, `1h` or `7d`.
    ///
    /// # Errors
    /// The text is neither a number of seconds nor a duration with units.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        match text.parse::<f64>() {
            Ok(seconds) => from_seconds(seconds),
            Err(_) => humantime::parse_duration(text).map_err(|err| {
                format!("`{text}` is not a duration such as 30s, 500ms or 2m: {err}")
            }),
        }
    }

    fn from_seconds(seconds: f64) -> Result<Duration, String> {
        Duration::try_from_secs_f64(seconds).map_err(|err| format!("{seconds} seconds: {err}"))
    }

    /// Deserializes a duration written as [`parse`] reads it, or as a number.
    ///
    /// # Errors
    /// As [`parse`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => from_seconds(seconds),
            Raw::Text(text) => parse(&text),
        }
        .map_err(serde::de::Error::custom)
    }

    /// [`deserialize`] for an optional duration.
    ///
    /// # Errors
    /// As [`parse`].
    pub fn deserialize_option<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "deserialize")] Duration);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_is_a_number_of_seconds_or_text_with_units() {
        assert_eq!(duration::parse("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration::parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(duration::parse("-1").is_err());
        assert!(duration::parse("soon").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_following_tokio_advances_with_paused_time() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::following_tokio(start);
        assert_eq!(clock.now(), start);
        clock.sleep_until(start + Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(90));
    }
}
