//! What each worker is doing, for readiness checks and operators.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Clock;

/// A worker's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    /// Started; it has not yet said it is running.
    Starting,
    /// Running.
    Running,
    /// Failed and waiting to be restarted.
    BackingOff {
        /// Why it failed.
        last_error: String,
        /// When it restarts.
        next_attempt: DateTime<Utc>,
    },
    /// Stopped: shut down, or its run method returned.
    Stopped,
    /// Failed for good: its policy stops the host, or it ran out of restarts.
    Failed {
        /// Why it failed.
        error: String,
    },
}

/// How a worker is supervised, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Restarted with backoff.
    Restart,
    /// Its failure stops the host.
    StopHost,
}

/// One worker's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    /// The worker's name.
    pub name: String,
    /// How it is supervised.
    pub policy: PolicyKind,
    /// Its schedule, for jobs (`every 30s`, `cron 0 * * * *`, with `, singleton`).
    pub schedule: Option<String>,
    /// What it is doing.
    #[serde(flatten)]
    pub state: WorkerState,
    /// Since when.
    pub since: DateTime<Utc>,
    /// How often it has been restarted since the host started.
    pub restarts: u32,
    /// For jobs: the scheduled time of the last tick this instance ran.
    pub last_tick: Option<DateTime<Utc>>,
    /// For jobs: how many ticks this instance ran.
    pub ticks: u64,
}

impl WorkerStatus {
    /// Whether this worker failed and its failure stops the host.
    #[must_use]
    pub fn failed_the_host(&self) -> bool {
        self.policy == PolicyKind::StopHost && matches!(self.state, WorkerState::Failed { .. })
    }
}

/// Every worker's health in a host; cheap to clone and to read.
#[derive(Debug, Clone)]
pub struct HostHealth {
    workers: Arc<Mutex<Vec<WorkerStatus>>>,
    clock: Clock,
}

impl HostHealth {
    pub(crate) fn new(clock: Clock) -> Self {
        Self {
            workers: Arc::default(),
            clock,
        }
    }

    pub(crate) fn register(
        &self,
        name: &str,
        policy: PolicyKind,
        schedule: Option<String>,
    ) -> HealthReporter {
        let mut workers = self.lock();
        workers.push(WorkerStatus {
            name: name.to_owned(),
            policy,
            schedule,
            state: WorkerState::Starting,
            since: self.clock.now(),
            restarts: 0,
            last_tick: None,
            ticks: 0,
        });
        HealthReporter {
            health: self.clone(),
            index: workers.len() - 1,
        }
    }

    /// Every worker's status, in registration order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        self.lock().clone()
    }

    /// The workers whose failure stops the host and that have failed.
    #[must_use]
    pub fn failed_stop_host_workers(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|w| w.failed_the_host())
            .map(|w| w.name.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<WorkerStatus>> {
        // A panic while holding this lock cannot leave a status half written (every
        // update is a plain assignment), so a poisoned lock is still good to read.
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reports one worker's health; a worker gets one in its context.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    health: HostHealth,
    index: usize,
}

impl HealthReporter {
    /// The worker is set up and doing its work. Call it once ready (after connecting
    /// a listener, say); jobs are reported running by their schedule.
    pub fn running(&self) {
        self.set(WorkerState::Running);
    }

    /// A job ran the tick scheduled at `at`.
    pub(crate) fn ticked(&self, at: DateTime<Utc>) {
        let mut workers = self.health.lock();
        let status = &mut workers[self.index];
        status.last_tick = Some(at);
        status.ticks += 1;
    }

    pub(crate) fn set(&self, state: WorkerState) {
        let now = self.health.clock.now();
        let mut workers = self.health.lock();
        let status = &mut workers[self.index];
        if status.state != state {
            status.state = state;
            status.since = now;
        }
    }

    pub(crate) fn restarted(&self) {
        self.health.lock()[self.index].restarts += 1;
    }
}
