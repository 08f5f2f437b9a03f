//! Wall-clock time for workers and schedules, replaceable in tests, and how the
//! engine's tables store it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The time as the fabric sees it: units of work (when events occur), the outbox
/// (when a message is due, when it is pruned), sagas (leases, retries, deadlines), the
/// host's schedules and leases, and the workflows' `now`.
///
/// [`Clock::system`] reads the system clock. [`Clock::following_tokio`] starts at a
/// chosen instant and advances with tokio's clock, so a test that pauses tokio's time
/// (`tokio::time::pause`) drives schedules and backoffs without sleeping.
/// [`Clock::manual`] stands still until its [`TimeMachine`] moves it: a test sees holds
/// expire, leases run out, retries become due and schedules tick by moving time
/// forward, with real databases under it. Sleeps on a manual clock end when time is
/// moved past their deadline; intervals that only pace polling stay in real time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    source: Source,
}

#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    System,
    /// The wall time at a tokio instant.
    FollowingTokio(DateTime<Utc>, tokio::time::Instant),
    /// The time its machine sets.
    Manual(tokio::sync::watch::Receiver<DateTime<Utc>>),
}

/// Moves a [`Clock::manual`] clock (and every copy of it). Cheap to clone.
#[derive(Debug, Clone)]
pub struct TimeMachine {
    now: std::sync::Arc<tokio::sync::watch::Sender<DateTime<Utc>>>,
}

impl TimeMachine {
    /// The clock this machine moves.
    #[must_use]
    pub fn clock(&self) -> Clock {
        Clock {
            source: Source::Manual(self.now.subscribe()),
        }
    }

    /// The time it shows.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    /// Moves time forward by `by`, waking every sleeper whose deadline passes.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        self.now.send_modify(|now| *now += by);
    }
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self {
            source: Source::System,
        }
    }

    /// A clock that reads `start` now and then advances with tokio's clock.
    #[must_use]
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        Self {
            source: Source::FollowingTokio(start, tokio::time::Instant::now()),
        }
    }

    /// A clock that shows `start` until the returned machine moves it.
    #[must_use]
    pub fn manual(start: DateTime<Utc>) -> (Self, TimeMachine) {
        let machine = TimeMachine {
            now: std::sync::Arc::new(tokio::sync::watch::Sender::new(start)),
        };
        (machine.clock(), machine)
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        match &self.source {
            Source::System => Utc::now(),
            Source::FollowingTokio(wall, instant) => {
                let elapsed =
                    chrono::Duration::from_std(instant.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
                *wall + elapsed
            }
            Source::Manual(now) => *now.borrow(),
        }
    }

    /// Sleeps until `at` by this clock. It may wake early if the system clock is
    /// set back meanwhile; callers that need the deadline check [`Clock::now`] again.
    /// On a manual clock it wakes once time is moved to `at` or past it (never, if the
    /// machine is gone).
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Source::Manual(now) = &self.source {
            let mut now = now.clone();
            if now.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
            return;
        }
        let left = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(left).await;
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

/// `at` as the engine's tables store it and read it back: to the millisecond.
pub(crate) fn as_stored(at: DateTime<Utc>) -> DateTime<Utc> {
    from_epoch_millis(epoch_millis(at))
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

    #[tokio::test]
    async fn a_manual_clock_stands_still_until_moved_and_wakes_its_sleepers() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (clock, time) = Clock::manual(start);
        let copy = clock.clone();
        let sleeper = tokio::spawn(async move {
            copy.sleep_until(start + Duration::from_secs(60)).await;
            copy.now()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(clock.now(), start);
        assert!(!sleeper.is_finished());
        time.advance(Duration::from_secs(59));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sleeper.is_finished());
        time.advance(Duration::from_secs(2));
        assert_eq!(sleeper.await.unwrap(), start + Duration::from_secs(61));
        assert_eq!(clock.now(), time.now());
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
