//! Jobs on a schedule: a fixed interval or a cron expression (UTC), optionally a
//! singleton across every instance sharing the `orchestration` database.
//!
//! Ticks fall on the schedule's own times (an interval's are multiples of the period
//! since the Unix epoch), so every instance agrees on which tick is which. Runs never
//! overlap: a tick that comes due while the previous run is still going waits for it,
//! and ticks missed meanwhile coalesce into one run, as .NET's `PeriodicTimer` does.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use tracing::Instrument;

use super::lease::Lease;
use super::{Worker, WorkerContext, WorkerError};

/// A job: one run per tick of its [`Schedule`].
pub trait Job: Send + Sync + 'static {
    /// The job's name, unique in its host (and, for singletons, across instances).
    fn name(&self) -> &str;

    /// Runs one tick. Return promptly once `context.shutdown()` is cancelled. An error
    /// (or a panic) is a failure of the job's worker, handled by its policy; after a
    /// restart the job runs again at the next tick.
    fn run(
        &self,
        tick: Tick,
        context: &WorkerContext,
    ) -> impl Future<Output = Result<(), WorkerError>> + Send;
}

/// One tick of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The schedule's time for this tick (the latest one, when several coalesced).
    pub scheduled_at: DateTime<Utc>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    times: Times,
    /// For singletons: how long a holder keeps the job's lease without renewing it.
    lease: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Times {
    Every(Duration),
    Cron(String),
}

impl Schedule {
    /// Every `period`, at multiples of it since the Unix epoch.
    #[must_use]
    pub fn every(period: Duration) -> Self {
        Self {
            times: Times::Every(period),
            lease: None,
        }
    }

    /// At the times of a cron expression, in UTC: five fields (minute, hour, day of
    /// month, month, day of week) or six with seconds first. Checked when the job is
    /// added to a host.
    #[must_use]
    pub fn cron(expression: impl Into<String>) -> Self {
        Self {
            times: Times::Cron(expression.into()),
            lease: None,
        }
    }

    /// Each tick runs on one instance only, among all that share the `orchestration`
    /// database, with a 30 s lease (see [`Schedule::singleton_with_lease`]).
    #[must_use]
    pub fn singleton(self) -> Self {
        self.singleton_with_lease(Duration::from_secs(30))
    }

    /// Each tick runs on one instance only. The instance that claims a tick holds the
    /// job's lease and keeps it for as long as it runs the job's worker, between ticks
    /// too, renewing it every third of `lease` (one `UPDATE` each time, however rare
    /// the ticks); if it dies, another instance takes over once `lease` has passed
    /// since the last renewal.
    #[must_use]
    pub fn singleton_with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.times {
            Times::Every(period) => write!(f, "every {period:?}")?,
            Times::Cron(expression) => write!(f, "cron {expression}")?,
        }
        if let Some(lease) = self.lease {
            write!(f, ", singleton (lease {lease:?})")?;
        }
        Ok(())
    }
}

/// A schedule's times, checked.
#[derive(Debug, Clone)]
enum ParsedTimes {
    /// The period in milliseconds (at least 1).
    Every(i64),
    Cron(Box<Cron>),
}

impl ParsedTimes {
    fn parse(times: &Times) -> Result<Self, String> {
        match times {
            Times::Every(period) => {
                let millis = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
                if millis < 1 {
                    return Err("the period must be at least 1 ms".to_owned());
                }
                Ok(Self::Every(millis))
            }
            Times::Cron(expression) => Cron::from_str(expression)
                .map(|cron| Self::Cron(Box::new(cron)))
                .map_err(|e| e.to_string()),
        }
    }

    /// The first time strictly after `after`; `None` if there is none.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(period) => {
                let next = (after.timestamp_millis().div_euclid(*period) + 1) * period;
                DateTime::from_timestamp_millis(next)
            }
            Self::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
        }
    }

    /// The latest time at or before `now`, given that `due` is one.
    fn latest_due(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Every(period) => {
                let latest = now.timestamp_millis().div_euclid(*period) * period;
                DateTime::from_timestamp_millis(latest).map_or(due, |latest| latest.max(due))
            }
            Self::Cron(_) => {
                let mut latest = due;
                while let Some(next) = self.next_after(latest).filter(|next| *next <= now) {
                    latest = next;
                }
                latest
            }
        }
    }
}

/// A job driven by its schedule: the worker the host supervises.
#[derive(Debug)]
pub(super) struct ScheduledJob<J> {
    job: J,
    schedule: Schedule,
    times: ParsedTimes,
}

impl<J: Job> ScheduledJob<J> {
    /// Checks the schedule; the error is the schedule as given and why it is invalid.
    pub(super) fn new(job: J, schedule: Schedule) -> Result<Self, (String, String)> {
        let times = ParsedTimes::parse(&schedule.times).map_err(|reason| {
            let given = match &schedule.times {
                Times::Every(period) => format!("every {period:?}"),
                Times::Cron(expression) => expression.clone(),
            };
            (given, reason)
        })?;
        if schedule
            .lease
            .is_some_and(|lease| lease < Duration::from_millis(30))
        {
            return Err((
                schedule.to_string(),
                "a singleton's lease must be at least 30 ms".to_owned(),
            ));
        }
        Ok(Self {
            job,
            schedule,
            times,
        })
    }

    pub(super) fn describe(&self) -> String {
        self.schedule.to_string()
    }

    async fn run_ticks(
        &self,
        context: &WorkerContext,
        lease: &mut Option<Lease>,
    ) -> Result<(), WorkerError> {
        let clock = context.clock().clone();
        let mut last = clock.now();
        loop {
            let now = clock.now();
            let Some(next) = self.times.next_after(last) else {
                tracing::info!("the schedule has no more ticks");
                return Ok(());
            };
            if next > now {
                let wake = lease
                    .as_ref()
                    .and_then(Lease::renew_at)
                    .map_or(next, |renew| renew.min(next));
                tokio::select! {
                    () = clock.sleep_until(wake) => {}
                    () = context.shutdown().cancelled() => return Ok(()),
                }
                if let Some(lease) = lease.as_mut() {
                    lease.renew_if_due(clock.now()).await;
                }
                continue;
            }
            let due = self.times.latest_due(next, now);
            last = due;
            if let Some(lease) = lease.as_mut()
                && !lease.claim(due, now).await?
            {
                continue;
            }
            let tick = Tick {
                scheduled_at: due,
                started_at: clock.now(),
            };
            let span = tracing::info_span!("tick", scheduled_at = %due);
            let started = std::time::Instant::now();
            let result = match lease.as_mut() {
                None => self.job.run(tick, context).instrument(span).await,
                Some(lease) => {
                    self.run_holding(tick, context, lease)
                        .instrument(span)
                        .await
                }
            };
            let job = self.job.name().to_owned();
            let outcome = if result.is_ok() { "ok" } else { "failed" };
            metrics::counter!("switchyard_job_ticks_total", "job" => job.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("switchyard_job_tick_duration_seconds", "job" => job)
                .record(started.elapsed().as_secs_f64());
            result?;
            context.health().ticked(due);
        }
    }

    /// Runs a tick while renewing the lease; if the lease is lost (another instance may
    /// take over), the tick is told to stop.
    async fn run_holding(
        &self,
        tick: Tick,
        context: &WorkerContext,
        lease: &mut Lease,
    ) -> Result<(), WorkerError> {
        let clock = context.clock().clone();
        let stop = context.shutdown().child_token();
        let tick_context = context.with_shutdown(stop.clone());
        let run = self.job.run(tick, &tick_context);
        tokio::pin!(run);
        loop {
            let renew = async {
                match lease.renew_at() {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = &mut run => return result,
                () = renew => {
                    lease.renew_if_due(clock.now()).await;
                    if !lease.is_held() && !stop.is_cancelled() {
                        tracing::warn!("lost the singleton lease while running; stopping this tick");
                        stop.cancel();
                    }
                }
            }
        }
    }
}

impl<J: Job> Worker for ScheduledJob<J> {
    fn name(&self) -> &str {
        self.job.name()
    }

    async fn run(&self, context: WorkerContext) -> Result<(), WorkerError> {
        let mut lease = match self.schedule.lease {
            Some(ttl) => Some(Lease::prepare(context.databases(), self.job.name(), ttl).await?),
            None => None,
        };
        context.health().running();
        let result = self.run_ticks(&context, &mut lease).await;
        if let Some(lease) = lease.as_mut() {
            lease.release().await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn intervals_fall_on_multiples_of_the_period() {
        let every = ParsedTimes::parse(&Times::Every(Duration::from_secs(30))).unwrap();
        assert_eq!(
            every.next_after(at("2026-01-01T00:00:10Z")),
            Some(at("2026-01-01T00:00:30Z"))
        );
        assert_eq!(
            every.next_after(at("2026-01-01T00:00:30Z")),
            Some(at("2026-01-01T00:01:00Z"))
        );
        // Missed ticks coalesce into the latest.
        assert_eq!(
            every.latest_due(at("2026-01-01T00:00:30Z"), at("2026-01-01T00:02:05Z")),
            at("2026-01-01T00:02:00Z")
        );
    }

    #[test]
    fn cron_runs_in_utc_with_five_or_six_fields() {
        let hourly = ParsedTimes::parse(&Times::Cron("15 * * * *".to_owned())).unwrap();
        assert_eq!(
            hourly.next_after(at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-01T11:15:00Z"))
        );
        assert_eq!(
            hourly.latest_due(at("2026-01-01T11:15:00Z"), at("2026-01-01T14:00:00Z")),
            at("2026-01-01T13:15:00Z")
        );
        let seconds = ParsedTimes::parse(&Times::Cron("*/10 * * * * *".to_owned())).unwrap();
        assert_eq!(
            seconds.next_after(at("2026-01-01T10:20:01Z")),
            Some(at("2026-01-01T10:20:10Z"))
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(ParsedTimes::parse(&Times::Cron("61 * * * *".to_owned())).is_err());
        assert!(ParsedTimes::parse(&Times::Cron("every minute".to_owned())).is_err());
        assert!(ParsedTimes::parse(&Times::Every(Duration::ZERO)).is_err());
    }
}
