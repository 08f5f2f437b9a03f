//! The worker host: long-running workers and scheduled jobs, supervised (restart with
//! backoff, or stop the host), stopped together within a timeout.
//!
//! The Rust counterpart of .NET's `BackgroundService`: a [`Worker`] is a loop that
//! runs until its context's shutdown token is cancelled; a [`Job`] is one tick of a
//! [`Schedule`]. Register both on a [`Host`], [`Host::start`] it, and call
//! [`RunningHost::shutdown`] to stop.

mod health;
mod lease;
mod schedule;
mod supervise;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::databases::Databases;
use crate::future::BoxFuture;

pub use health::{HealthReporter, HostHealth, PolicyKind, WorkerState, WorkerStatus};
pub use schedule::{Job, Schedule, Tick};
use supervise::supervise;

/// Why a worker failed: any error, boxed at the host's boundary.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// A long-running background worker.
///
/// `run` should return once `context.shutdown()` is cancelled. Returning `Ok` earlier
/// means the worker is done (it is not restarted); returning `Err` or panicking is a
/// failure, handled by the worker's [`Policy`]. A restart calls `run` again with a
/// clone of the same context.
pub trait Worker: Send + Sync + 'static {
    /// The worker's name, unique in its host; it appears in logs, health and config.
    fn name(&self) -> &str;

    /// Does the work until shut down.
    fn run(&self, context: WorkerContext) -> impl Future<Output = Result<(), WorkerError>> + Send;
}

/// What a worker gets to do its work.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    databases: Databases,
    clock: Clock,
    shutdown: CancellationToken,
    health: HealthReporter,
}

impl WorkerContext {
    /// The databases (a worker that needs more, such as the event bus or the sagas,
    /// is given it when it is made).
    #[must_use]
    pub fn databases(&self) -> &Databases {
        &self.databases
    }

    /// The clock; use it instead of the system time so tests can control it.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Cancelled when the worker must stop.
    #[must_use]
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Reports the worker's health.
    #[must_use]
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Sleeps for `duration` unless shut down first; `false` means shut down.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    fn with_shutdown(&self, shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            ..self.clone()
        }
    }
}

/// What the host does when a worker fails (returns an error or panics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Restart it after a growing delay; give up (the worker is `failed`, the host
    /// goes on) after too many restarts within a window.
    Restart(Restarts),
    /// Stop the whole host; the process should exit non-zero.
    StopHost,
}

impl Default for Policy {
    fn default() -> Self {
        Self::Restart(Restarts::default())
    }
}

impl Policy {
    fn kind(&self) -> PolicyKind {
        match self {
            Self::Restart(_) => PolicyKind::Restart,
            Self::StopHost => PolicyKind::StopHost,
        }
    }
}

/// How a failed worker is restarted: after a backoff, a bounded number of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restarts {
    /// The delay before each restart; it doubles with each restart in the window.
    pub backoff: Backoff,
    /// The most restarts within `window`; one more failure and the worker is failed.
    pub max_restarts: u32,
    /// The window over which restarts are counted.
    pub window: Duration,
}

impl Default for Restarts {
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            // At the 60 s cap about ten restarts fit in ten minutes, so a worker that
            // keeps failing slowly (a database outage) is retried indefinitely; a
            // crash loop under a short configured backoff is given up on.
            max_restarts: 20,
            window: Duration::from_secs(600),
        }
    }
}

/// The host could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Two workers share a name.
    #[error("two workers are named `{0}`; worker names must be unique")]
    DuplicateName(String),
    /// A job's schedule is invalid.
    #[error("worker `{worker}` has an invalid schedule `{schedule}`: {reason}")]
    InvalidSchedule {
        /// The worker.
        worker: String,
        /// The schedule as given.
        schedule: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// A worker whose policy stops the host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker `{worker}` failed and its policy stops the host: {error}")]
pub struct HostFailure {
    /// The worker.
    pub worker: String,
    /// Its error.
    pub error: String,
}

/// How a host stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Workers that ended within the timeout, or before it (failed ones included).
    pub stopped: Vec<String>,
    /// Workers still running at the timeout: abandoned.
    pub abandoned: Vec<String>,
    /// The stop-host failure that stopped the host, if one did.
    pub failure: Option<HostFailure>,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} stopped", self.stopped.len())?;
        if !self.abandoned.is_empty() {
            write!(
                f,
                ", abandoned after the timeout: {}",
                self.abandoned.join(", ")
            )?;
        }
        if let Some(failure) = &self.failure {
            write!(f, "; {failure}")?;
        }
        Ok(())
    }
}

/// The dyn-compatible face of a [`Worker`], boxed at the host's boundary.
pub(super) trait DynWorker: Send + Sync {
    fn run_boxed(
        self: Arc<Self>,
        context: WorkerContext,
    ) -> BoxFuture<'static, Result<(), WorkerError>>;
}

impl<W: Worker> DynWorker for W {
    fn run_boxed(
        self: Arc<Self>,
        context: WorkerContext,
    ) -> BoxFuture<'static, Result<(), WorkerError>> {
        Box::pin(async move { self.run(context).await })
    }
}

impl fmt::Debug for dyn DynWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Worker")
    }
}

#[derive(Debug)]
pub(super) struct Registered {
    pub(super) name: String,
    pub(super) worker: Arc<dyn DynWorker>,
    pub(super) policy: Policy,
    pub(super) health: HealthReporter,
}

/// Workers to run, not yet started.
#[derive(Debug)]
pub struct Host {
    databases: Databases,
    clock: Clock,
    shutdown_timeout: Duration,
    health: HostHealth,
    workers: Vec<Registered>,
}

impl Host {
    /// A host for workers on `databases` (singleton jobs take their leases in the
    /// `orchestration` boundary), with the databases' clock and a 30 s shutdown timeout.
    #[must_use]
    pub fn new(databases: &Databases) -> Self {
        Self::with_clock(databases, databases.clock().clone())
    }

    /// A host whose workers see `clock` instead of the databases' clock.
    #[must_use]
    pub fn with_clock(databases: &Databases, clock: Clock) -> Self {
        Self {
            databases: databases.clone(),
            health: HostHealth::new(clock.clone()),
            clock,
            shutdown_timeout: Duration::from_secs(30),
            workers: Vec::new(),
        }
    }

    /// How long [`RunningHost::shutdown`] waits for workers before abandoning them.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Registers a long-running worker.
    ///
    /// # Errors
    /// Another worker has the same name.
    pub fn add(&mut self, worker: impl Worker, policy: Policy) -> Result<(), HostError> {
        let name = worker.name().to_owned();
        self.register(name, Arc::new(worker), policy, None)
    }

    /// Registers a job that runs on `schedule`.
    ///
    /// # Errors
    /// Another worker has the same name, or the schedule is invalid (a cron
    /// expression that does not parse); the error names the worker.
    pub fn add_job(
        &mut self,
        job: impl Job,
        schedule: Schedule,
        policy: Policy,
    ) -> Result<(), HostError> {
        let name = job.name().to_owned();
        let scheduled =
            schedule::ScheduledJob::new(job, schedule).map_err(|(schedule, reason)| {
                HostError::InvalidSchedule {
                    worker: name.clone(),
                    schedule,
                    reason,
                }
            })?;
        let description = scheduled.describe();
        self.register(name, Arc::new(scheduled), policy, Some(description))
    }

    fn register(
        &mut self,
        name: String,
        worker: Arc<dyn DynWorker>,
        policy: Policy,
        schedule: Option<String>,
    ) -> Result<(), HostError> {
        if self.workers.iter().any(|w| w.name == name) {
            return Err(HostError::DuplicateName(name));
        }
        let health = self.health.register(&name, policy.kind(), schedule);
        self.workers.push(Registered {
            name,
            worker,
            policy,
            health,
        });
        Ok(())
    }

    /// The registered workers' names.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.workers.iter().map(|w| w.name.as_str()).collect()
    }

    /// Every worker's health; the same view before and after start.
    #[must_use]
    pub fn health(&self) -> HostHealth {
        self.health.clone()
    }

    /// Starts every worker under supervision. Call it inside a tokio runtime.
    #[must_use]
    pub fn start(self) -> RunningHost {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (failure_sender, failure) = watch::channel(None);
        let failure_sender = Arc::new(failure_sender);
        let mut supervisors = Vec::with_capacity(self.workers.len());
        for registered in self.workers {
            let context = WorkerContext {
                databases: self.databases.clone(),
                clock: self.clock.clone(),
                shutdown: shutdown.clone(),
                health: registered.health.clone(),
            };
            let span = tracing::info_span!("worker", worker = %registered.name);
            let name = registered.name.clone();
            let handle = tracker.spawn(
                supervise(registered, context, Arc::clone(&failure_sender)).instrument(span),
            );
            supervisors.push((name, handle.abort_handle()));
        }
        tracker.close();
        RunningHost {
            shutdown,
            tracker,
            supervisors,
            health: self.health,
            failure,
            timeout: self.shutdown_timeout,
        }
    }
}

/// Started workers.
#[derive(Debug)]
pub struct RunningHost {
    shutdown: CancellationToken,
    tracker: TaskTracker,
    supervisors: Vec<(String, AbortHandle)>,
    health: HostHealth,
    failure: watch::Receiver<Option<HostFailure>>,
    timeout: Duration,
}

impl RunningHost {
    /// Every worker's health.
    #[must_use]
    pub fn health(&self) -> HostHealth {
        self.health.clone()
    }

    /// Resolves when a worker whose policy is [`Policy::StopHost`] has failed; the
    /// caller should then stop (see [`RunningHost::shutdown`]). Pending forever while
    /// none has. The future owns what it needs, so it can outlive the borrow.
    pub fn failed(&self) -> impl Future<Output = HostFailure> + Send + 'static {
        let mut failure = self.failure.clone();
        async move {
            let seen = failure
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|failure| failure.clone());
            match seen {
                Some(failure) => failure,
                // Every supervisor has ended without a failure: none will come.
                None => std::future::pending().await,
            }
        }
    }

    /// Cancels every worker and waits up to the shutdown timeout for them to stop;
    /// workers still running then are abandoned (aborted at their next `.await`) and
    /// named in the report.
    pub async fn shutdown(self) -> ShutdownReport {
        let timeout = self.timeout;
        self.shutdown_within(timeout).await
    }

    /// [`RunningHost::shutdown`], waiting up to `timeout` instead of the configured
    /// shutdown timeout (for a caller that spent part of it already).
    pub async fn shutdown_within(mut self, timeout: Duration) -> ShutdownReport {
        self.timeout = timeout;
        self.shutdown.cancel();
        let finished = tokio::time::timeout(self.timeout, self.tracker.wait())
            .await
            .is_ok();
        let mut report = ShutdownReport {
            failure: self.failure.borrow().clone(),
            ..ShutdownReport::default()
        };
        for (name, supervisor) in &self.supervisors {
            if finished || supervisor.is_finished() {
                report.stopped.push(name.clone());
            } else {
                supervisor.abort();
                tracing::warn!(worker = %name, timeout = ?self.timeout, "worker did not stop in time; abandoned");
                report.abandoned.push(name.clone());
            }
        }
        report
    }
}

impl Drop for RunningHost {
    /// A host dropped without [`RunningHost::shutdown`] aborts its workers at once
    /// (no cleanup runs, as when the process dies).
    fn drop(&mut self) {
        for (_, supervisor) in &self.supervisors {
            supervisor.abort();
        }
    }
}
