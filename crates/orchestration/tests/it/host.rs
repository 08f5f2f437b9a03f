//! The worker host: restarts with backoff, stop-host failures, shutdown with a worker
//! that ignores cancellation, schedules whose missed ticks coalesce, and singleton jobs
//! shared by two hosts on one database. Supervision tests run on tokio's paused clock,
//! so backoffs and timeouts take no real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestration::testing::{Engine, Scenario, TestDatabase};
use orchestration::{
    Fabric,
    backoff::Backoff,
    clock::Clock,
    host::{
        Host, HostError, HostFailure, Job, Policy, Restarts, Schedule, Tick, Worker, WorkerContext,
        WorkerError, WorkerState, WorkerStatus,
    },
};
use tokio::time::Instant;

/// A fabric for workers that do not touch it, created before time is paused (the
/// pool's own timeouts must not see paused time).
async fn idle_fabric() -> (TestDatabase, Fabric) {
    let db = TestDatabase::create(Engine::Sqlite, [orchestration::schema::boundary()])
        .await
        .expect("SQLite is embedded");
    let fabric = db.fabric().clone();
    tokio::time::pause();
    (db, fabric)
}

fn midnight() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Fails every run, after recording when it started.
struct AlwaysFails {
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Worker for AlwaysFails {
    fn name(&self) -> &str {
        "always_fails"
    }

    async fn run(&self, context: WorkerContext) -> Result<(), WorkerError> {
        self.starts.lock().unwrap().push(Instant::now());
        context.health().running();
        Err("the feed is unreachable".into())
    }
}

/// Runs until shut down.
struct Steady;

impl Worker for Steady {
    fn name(&self) -> &str {
        "steady"
    }

    async fn run(&self, context: WorkerContext) -> Result<(), WorkerError> {
        context.health().running();
        context.shutdown().cancelled().await;
        Ok(())
    }
}

/// Worker `name`'s status, if the host runs it.
fn worker(host_health: &orchestration::host::HostHealth, name: &str) -> Option<WorkerStatus> {
    host_health.snapshot().into_iter().find(|s| s.name == name)
}

#[tokio::test]
async fn a_failing_worker_restarts_with_exponential_backoff_then_is_given_up() {
    let (_db, fabric) = idle_fabric().await;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let backoff = Restarts {
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(4)),
        max_restarts: 4,
        window: Duration::from_secs(3600),
    };
    let mut host = Host::new(fabric.databases());
    host.add(
        AlwaysFails {
            starts: Arc::clone(&starts),
        },
        Policy::Restart(backoff),
    )
    .unwrap();
    host.add(Steady, Policy::StopHost).unwrap();
    let health = host.health();
    let running = host.start();

    let backing_off = Scenario::new(&fabric)
        .wait_for_state(
            "always_fails backing off",
            async |_| worker(&health, "always_fails"),
            |s| {
                s.as_ref()
                    .is_some_and(|s| matches!(s.state, WorkerState::BackingOff { .. }))
            },
        )
        .await
        .unwrap();
    let WorkerState::BackingOff { last_error, .. } = &backing_off.state else {
        unreachable!()
    };
    assert_eq!(last_error, "the feed is unreachable");

    let failed = Scenario::new(&fabric)
        .wait_for_state(
            "always_fails given up",
            async |_| worker(&health, "always_fails"),
            |s| {
                s.as_ref()
                    .is_some_and(|s| matches!(s.state, WorkerState::Failed { .. }))
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.restarts, 4);
    let starts = starts.lock().unwrap().clone();
    // 1 s, doubling, capped at 4 s; the fifth failure exceeds 4 restarts in the window.
    // (Tokio's timer rounds up to its 1 ms resolution.)
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() / 10 * 10)
        .collect();
    assert_eq!(gaps, [1000, 2000, 4000, 4000], "delays between runs (ms)");
    // A given-up restart worker does not stop the host; the other keeps running.
    assert!(health.failed_stop_host_workers().is_empty());
    let steady = health
        .snapshot()
        .into_iter()
        .find(|s| s.name == "steady")
        .unwrap();
    assert_eq!(steady.state, WorkerState::Running);

    let report = running.shutdown().await;
    assert!(report.abandoned.is_empty(), "{report}");
    assert_eq!(report.failure, None);
}

/// Panics on its first run, then runs until shut down.
struct PanicsOnce {
    runs: Arc<Mutex<u32>>,
}

impl Worker for PanicsOnce {
    fn name(&self) -> &str {
        "panics_once"
    }

    async fn run(&self, context: WorkerContext) -> Result<(), WorkerError> {
        let first = {
            let mut runs = self.runs.lock().unwrap();
            *runs += 1;
            *runs == 1
        };
        assert!(!first, "boom on the first run");
        context.health().running();
        context.shutdown().cancelled().await;
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_worker_is_restarted_by_its_policy() {
    let (_db, fabric) = idle_fabric().await;
    let runs = Arc::new(Mutex::new(0));
    let mut host = Host::new(fabric.databases());
    host.add(
        PanicsOnce {
            runs: Arc::clone(&runs),
        },
        Policy::default(),
    )
    .unwrap();
    let health = host.health();
    let running = host.start();
    Scenario::new(&fabric)
        .wait_for_state(
            "panics_once running again",
            async |_| worker(&health, "panics_once"),
            |s| {
                s.as_ref()
                    .is_some_and(|s| s.state == WorkerState::Running && s.restarts == 1)
            },
        )
        .await;
    assert_eq!(*runs.lock().unwrap(), 2);
    let report = running.shutdown().await;
    assert_eq!(report.stopped, ["panics_once"]);
}

#[tokio::test]
async fn a_stop_host_worker_failure_stops_the_host() {
    let (_db, fabric) = idle_fabric().await;
    let mut host = Host::new(fabric.databases());
    host.add(
        AlwaysFails {
            starts: Arc::default(),
        },
        Policy::StopHost,
    )
    .unwrap();
    host.add(Steady, Policy::default()).unwrap();
    let health = host.health();
    let running = host.start();
    let failure = tokio::time::timeout(Duration::from_secs(5), running.failed())
        .await
        .expect("the failure is reported");
    assert_eq!(
        failure,
        HostFailure {
            worker: "always_fails".to_owned(),
            error: "the feed is unreachable".to_owned(),
        }
    );
    assert_eq!(health.failed_stop_host_workers(), ["always_fails"]);
    let report = running.shutdown().await;
    assert_eq!(report.failure, Some(failure));
    assert!(report.abandoned.is_empty());
    let steady = health
        .snapshot()
        .into_iter()
        .find(|s| s.name == "steady")
        .unwrap();
    assert_eq!(steady.state, WorkerState::Stopped);
}

/// Never looks at its shutdown token.
struct Stubborn;

impl Worker for Stubborn {
    fn name(&self) -> &str {
        "stubborn"
    }

    async fn run(&self, _context: WorkerContext) -> Result<(), WorkerError> {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

#[tokio::test]
async fn a_worker_that_ignores_cancellation_is_abandoned_after_the_timeout() {
    let (_db, fabric) = idle_fabric().await;
    let mut host = Host::new(fabric.databases()).shutdown_timeout(Duration::from_secs(5));
    host.add(Stubborn, Policy::default()).unwrap();
    host.add(Steady, Policy::default()).unwrap();
    let running = host.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    let report = running.shutdown().await;
    assert_eq!(
        asked.elapsed().as_millis() / 10,
        500,
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(report.abandoned, ["stubborn"]);
    assert_eq!(report.stopped, ["steady"]);
    assert!(
        report
            .to_string()
            .contains("abandoned after the timeout: stubborn"),
        "{report}"
    );
}

/// Records each tick; the first one takes `first_run` long.
struct Recorder {
    name: &'static str,
    ticks: Arc<Mutex<Vec<(Tick, &'static str)>>>,
    first_run: Duration,
    host: &'static str,
}

impl Job for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    async fn run(&self, tick: Tick, context: &WorkerContext) -> Result<(), WorkerError> {
        let first = {
            let mut ticks = self.ticks.lock().unwrap();
            ticks.push((tick, self.host));
            ticks.len() == 1
        };
        if first {
            context.sleep(self.first_run).await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn interval_ticks_never_overlap_and_missed_ones_coalesce() {
    let (_db, fabric) = idle_fabric().await;
    let start = midnight() + Duration::from_secs(3);
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let mut host = Host::with_clock(fabric.databases(), Clock::following_tokio(start));
    host.add_job(
        Recorder {
            name: "report",
            ticks: Arc::clone(&ticks),
            first_run: Duration::from_secs(25),
            host: "a",
        },
        Schedule::every(Duration::from_secs(10)),
        Policy::default(),
    )
    .unwrap();
    let health = host.health();
    let running = host.start();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let report = running.shutdown().await;
    assert!(report.abandoned.is_empty());

    let seen: Vec<(u64, u64)> = ticks
        .lock()
        .unwrap()
        .iter()
        .map(|(tick, _)| {
            let offset = |at: DateTime<Utc>| (at - midnight()).num_seconds() as u64;
            (offset(tick.scheduled_at), offset(tick.started_at))
        })
        .collect();
    // Ticks at :10, :20, :30, …; the first run lasts until :35, so :20 and :30 coalesce
    // into one run of :30, started at :35; then the schedule resumes.
    assert_eq!(seen, [(10, 10), (30, 35), (40, 40), (50, 50), (60, 60)]);
    let status = health.snapshot().pop().unwrap();
    assert_eq!(status.ticks, 5);
    assert_eq!(status.schedule.as_deref(), Some("every 10s"));
}

#[tokio::test]
async fn an_invalid_cron_expression_is_refused_naming_the_worker() {
    let (_db, fabric) = idle_fabric().await;
    let mut host = Host::new(fabric.databases());
    let err = host
        .add_job(
            Recorder {
                name: "nightly_report",
                ticks: Arc::default(),
                first_run: Duration::ZERO,
                host: "a",
            },
            Schedule::cron("0 25 * * *"),
            Policy::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, HostError::InvalidSchedule { worker, schedule, .. }
            if worker == "nightly_report" && schedule == "0 25 * * *"),
        "{err}"
    );
    assert!(err.to_string().contains("nightly_report"), "{err}");
    host.add(Steady, Policy::default()).unwrap();
    assert!(matches!(
        host.add(Steady, Policy::default()),
        Err(HostError::DuplicateName(name)) if name == "steady"
    ));
}

orchestration::engine_tests! {
    boundaries: [orchestration::schema::boundary()];
    a_singleton_job_runs_each_tick_once_across_hosts_and_survives_its_holder,
}

/// Two hosts on one database run a singleton job every 400 ms with a 1.2 s lease: every
/// tick runs exactly once, on the holder; after the holder dies (its host is dropped
/// without releasing the lease), the other host takes over once the lease expires.
async fn a_singleton_job_runs_each_tick_once_across_hosts_and_survives_its_holder(
    db: TestDatabase,
) {
    const PERIOD: Duration = Duration::from_millis(400);
    const LEASE: Duration = Duration::from_millis(1200);
    let other = Fabric::connect(db.topology(), [orchestration::schema::boundary()])
        .await
        .expect("a second instance connects");
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let start = |fabric: Fabric, host: &'static str| {
        let mut jobs = Host::new(fabric.databases());
        jobs.add_job(
            Recorder {
                name: "settlement",
                ticks: Arc::clone(&ticks),
                first_run: Duration::ZERO,
                host,
            },
            Schedule::every(PERIOD).singleton_with_lease(LEASE),
            Policy::default(),
        )
        .unwrap();
        jobs.start()
    };
    let a = start(db.fabric().clone(), "a");
    let b = start(other.clone(), "b");
    tokio::time::sleep(PERIOD * 8).await;

    let (holder_name, survivor, killed) = {
        let ticks = ticks.lock().unwrap();
        assert!(ticks.len() >= 6, "ticks ran: {}", ticks.len());
        let holder = ticks[0].1;
        assert!(
            ticks.iter().all(|(_, host)| *host == holder),
            "the holder keeps the lease: {ticks:?}"
        );
        if holder == "a" {
            (holder, b, a)
        } else {
            (holder, a, b)
        }
    };
    drop(killed);
    let killed_at = Utc::now();
    tokio::time::sleep(LEASE + PERIOD * 6).await;
    let report = survivor.shutdown().await;
    assert!(report.abandoned.is_empty());
    other.close().await;

    let ticks = ticks.lock().unwrap();
    let slots: Vec<i64> = ticks
        .iter()
        .map(|(tick, _)| tick.scheduled_at.timestamp_millis())
        .collect();
    assert!(
        slots.windows(2).all(|pair| pair[0] < pair[1]),
        "each tick ran once, in order: {slots:?}"
    );
    let period = i64::try_from(PERIOD.as_millis()).unwrap();
    let (before, after): (Vec<&(Tick, &str)>, Vec<_>) =
        ticks.iter().partition(|(_, host)| *host == holder_name);
    for run in [&before, &after] {
        for pair in run.windows(2) {
            let gap = (pair[1].0.scheduled_at - pair[0].0.scheduled_at).num_milliseconds();
            assert_eq!(
                gap, period,
                "no tick missed while an instance holds the lease: {ticks:?}"
            );
        }
    }
    let takeover = after
        .first()
        .expect("the survivor took over")
        .0
        .scheduled_at;
    let last_of_holder = before.last().unwrap().0.scheduled_at;
    assert!(takeover > last_of_holder);
    // Not before the dead holder's lease could expire (it was renewed at most a third
    // of the lease before the kill), and not much after.
    let waited = takeover - killed_at;
    assert!(
        waited
            >= chrono::Duration::from_std(LEASE * 2 / 3).unwrap()
                - chrono::Duration::milliseconds(50),
        "took over {waited} after the kill"
    );
    assert!(
        waited <= chrono::Duration::from_std(LEASE + PERIOD * 2).unwrap(),
        "took over {waited} after the kill"
    );
    assert!(
        after.len() >= 3,
        "the survivor keeps running the job: {ticks:?}"
    );
}
